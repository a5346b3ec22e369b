from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle as DrfScopedRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from portal.clients import client_ip

if TYPE_CHECKING:
    from drf_spectacular.generators import SchemaGenerator


class ScopedRateThrottle(DrfScopedRateThrottle):
    """DRF's scoped rate throttle, per client as ``portal.clients`` finds it (behind a trusted
    proxy, the address it forwards) rather than DRF's own reading of X-Forwarded-For."""

    def get_ident(self, request: Request) -> str:
        return client_ip(request) or "unknown"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus Django's ValidationError turned into field errors (400), so services can
    raise the one error type both the HTML views and the API understand."""
    if isinstance(exc, ValidationError):
        body: dict[str, list[str] | str]
        if hasattr(exc, "error_dict"):
            body = {
                field: [str(m) for e in errors for m in e.messages]
                for field, errors in exc.error_dict.items()
            }
        else:
            body = {"detail": " ".join(exc.messages)}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    return drf_exception_handler(exc, context)


# An OpenAPI document or a part of it, as JSON.
JsonObject = dict[str, Any]

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
# A 400 names the fields at fault ({"field": ["message"]}; a nested or listed field nests the
# same way: {"target": {"folder": [...]}}), or says what is wrong in "detail".
_FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "non_field_errors": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"$ref": "#/components/schemas/FieldErrors"},
        ]
    },
}
_STANDARD_ERRORS = {
    "400": ("FieldErrors", "The request is invalid: each field at fault with its messages."),
    "401": ("Error", "No valid credentials: log in or send an API token."),
    "403": ("Error", "Your account may not do this."),
    "404": ("Error", "Not found, or not visible to you (the two answer alike)."),
}


def document_standard_errors(
    result: JsonObject, generator: SchemaGenerator, request: Request | None, public: bool
) -> JsonObject:
    """drf-spectacular post-processing hook: every operation documents the error answers every
    view can give (400 field errors, 401, 403, 404) in their one shape, so the schema matches
    what the API really sends, and no view has to repeat them. A view that documents its own
    body for one of them keeps it. Optional query parameters allow an empty value, which DRF
    reads as absent."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = _ERROR_SCHEMA
    schemas["FieldErrors"] = _FIELD_ERRORS_SCHEMA
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and not parameter.get("required"):
                    # DRF reads an empty optional query value as absent (``date_to=``).
                    parameter["allowEmptyValue"] = True
            responses = operation.setdefault("responses", {})
            for status_code, (name, description) in _STANDARD_ERRORS.items():
                documented = responses.get(status_code, {})
                if _has_named_schema(documented):
                    continue  # the view documented its own body for this status
                responses[status_code] = {
                    "description": documented.get("description") or description,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                    },
                }
            if "429" in responses:
                responses["429"]["content"] = {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }
    return result


def _has_named_schema(response: JsonObject) -> bool:
    """Whether a documented response names its body's schema (not a bare "any object")."""
    return any(
        "$ref" in media.get("schema", {}) or "anyOf" in media.get("schema", {})
        for media in response.get("content", {}).values()
    )
