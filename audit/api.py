"""REST API: the audit trail for organization administrators (API.md, "Audit").

A caller with the "administer" permission in some organizations reads those organizations'
events and the events of their own actions, newest first, 100 per page. Reading the trail is
itself audited (AUDIT_READ, with the filters used); an attempt without the permission is recorded
as ACCESS_DENIED.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import Action, AuditEvent, Outcome
from audit.selectors import events_page, events_visible_to, filter_events, trail_organization_ids
from audit.services import record

PAGE_SIZE = 100
FILTERS = ("study", "actor", "action", "since", "until")

# --- Cursors -------------------------------------------------------------------------------


class InvalidCursor(ValueError):
    pass


def encode_cursor(before_id: int) -> str:
    raw = json.dumps({"b": before_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        before_id = json.loads(base64.urlsafe_b64decode(padded.encode()))["b"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidCursor from exc
    if not isinstance(before_id, int) or isinstance(before_id, bool) or before_id < 1:
        raise InvalidCursor
    return before_id


# --- Serializers (validate the query, shape the output, decide nothing) --------------------


@extend_schema_field(OpenApiTypes.STR)
class InstantField(serializers.Field):
    """An ISO 8601 date or date-time. A date or a time without offset is read in the portal's
    time zone. ``boundary="end"`` turns a date into the start of the next day, so that
    ``until=2024-05-17`` includes all of 17 May."""

    default_error_messages = {
        "invalid": _(
            "Enter an ISO 8601 date (2024-05-17) or date and time (2024-05-17T08:30:00+02:00); "
            "in a URL, write “+” as %2B."
        ),
        "range": _("This date is out of range."),
    }

    def __init__(self, *, boundary: str = "start", **kwargs: Any) -> None:
        self.boundary = boundary
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> datetime:
        text = str(data).strip()
        try:
            # A bare date first: Python's datetime parser would take "2024-05-17" as midnight,
            # losing the "whole day" meaning of an end date.
            day = parse_date(text)
            if day is not None:
                return self._day_boundary(day)
            instant = parse_datetime(text)
        except ValueError:
            self.fail("invalid")
        if instant is None:
            self.fail("invalid")
        return self._aware(instant)

    def _day_boundary(self, day: date) -> datetime:
        if self.boundary == "end":
            try:
                day += timedelta(days=1)
            except OverflowError:
                self.fail("range")
        return self._aware(datetime.combine(day, time.min))

    def _aware(self, instant: datetime) -> datetime:
        try:
            if timezone.is_naive(instant):
                instant = timezone.make_aware(instant)
            # The database compares in UTC; years 1 and 9999 may not convert.
            instant.astimezone(UTC)
        except (OverflowError, ValueError):
            self.fail("range")
        return instant

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class AuditQuerySerializer(serializers.Serializer):
    study = serializers.CharField(required=False, allow_blank=True, max_length=64)
    actor = serializers.CharField(required=False, allow_blank=True, max_length=150)
    action = serializers.ChoiceField(required=False, allow_blank=True, choices=Action.choices)
    since = InstantField(required=False)
    until = InstantField(required=False, boundary="end")
    cursor = serializers.CharField(required=False, allow_blank=True, max_length=200)

    def validate_cursor(self, value: str) -> int | None:
        if not value:
            return None
        try:
            return decode_cursor(value)
        except InvalidCursor as exc:
            raise serializers.ValidationError(
                _("Invalid cursor: use the “next” link of the previous page.")
            ) from exc

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": [_("“until” must be after “since”.")]})
        return attrs


class TargetSerializer(serializers.Serializer):
    type = serializers.CharField(help_text=_("What was acted on: study, link, share, user…"))
    id = serializers.CharField()


class AuditEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    actor = serializers.CharField(
        source="actor_label", help_text=_("Username, or who acted without an account.")
    )
    action = serializers.ChoiceField(choices=Action.choices)
    target = serializers.SerializerMethodField()
    ip = serializers.IPAddressField(allow_null=True)
    details = serializers.JSONField(help_text=_("Action-specific; secrets are masked."))
    outcome = serializers.ChoiceField(
        choices=Outcome.choices, help_text=_("DICOM EventOutcomeIndicator: 0 success, 4/8/12.")
    )
    event_code = serializers.CharField(help_text=_("DICOM PS3.15 EventID code (DCM)."))
    study_uid = serializers.CharField()
    patient_id = serializers.CharField()

    @extend_schema_field(TargetSerializer(allow_null=True))
    def get_target(self, event: AuditEvent) -> dict[str, str] | None:
        if not event.target_type and not event.target_id:
            return None
        return {"type": event.target_type, "id": event.target_id}


class AuditPageSerializer(serializers.Serializer):
    results = AuditEventSerializer(many=True)
    next = serializers.URLField(allow_null=True)


_ERROR = inline_serializer("AuditError", fields={"detail": serializers.CharField()})

# --- View ----------------------------------------------------------------------------------


class AuditTrailView(APIView):
    """The audit trail of the organizations the caller administers."""

    @extend_schema(
        operation_id="audit_list",
        summary="Read the audit trail",
        description=(
            "Events of the organizations you administer, and of your own actions, newest "
            "first, 100 per page. Needs the “Organization: administer” permission. Each call "
            "is itself recorded in the trail."
        ),
        parameters=[
            OpenApiParameter("study", OpenApiTypes.STR, description="Exact study instance UID."),
            OpenApiParameter("actor", OpenApiTypes.STR, description="Exact username (actor)."),
            OpenApiParameter(
                "action", OpenApiTypes.STR, enum=Action.values, description="One action."
            ),
            OpenApiParameter(
                "since",
                OpenApiTypes.STR,
                description="ISO 8601 date or date-time; events at or after it. Without an "
                "offset, the portal's time zone.",
            ),
            OpenApiParameter(
                "until",
                OpenApiTypes.STR,
                description="ISO 8601 date or date-time; events before it (a date includes "
                "that whole day).",
            ),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="From `next`."),
        ],
        responses={
            200: AuditPageSerializer,
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="A filter is invalid."),
            403: OpenApiResponse(_ERROR, description="You administer no organization."),
        },
        tags=["audit"],
    )
    def get(self, request: Request) -> Response:
        organization_ids = trail_organization_ids(request.user)
        if not organization_ids:
            with transaction.atomic():
                record(
                    action=Action.ACCESS_DENIED,
                    request=request,
                    outcome=Outcome.MINOR_FAILURE,
                    target_type="audit_trail",
                    details={"via": "api"},
                )
            raise PermissionDenied(_("Only organization administrators may read the audit trail."))
        query = AuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        events = filter_events(
            events_visible_to(user=request.user, organization_ids=organization_ids),
            study=params.get("study", ""),
            actor=params.get("actor", ""),
            action=params.get("action", ""),
            since=params.get("since"),
            until=params.get("until"),
        )
        # The read and its record commit together: if the trail cannot note who read it, the
        # caller gets an error rather than the events (fail closed).
        with transaction.atomic():
            page, before_id = events_page(events, before_id=params.get("cursor"), size=PAGE_SIZE)
            record(
                action=Action.AUDIT_READ,
                request=request,
                # With exactly one administered organization the read belongs to it, so its
                # other administrators see who read their trail.
                organization_id=organization_ids[0] if len(organization_ids) == 1 else None,
                target_type="audit_trail",
                details={
                    "via": "api",
                    "filters": {
                        name: request.query_params[name]
                        for name in FILTERS
                        if request.query_params.get(name)
                    },
                    "page": "next" if params.get("cursor") else "first",
                    "returned": len(page),
                },
            )
        return Response(
            {
                "results": AuditEventSerializer(page, many=True).data,
                "next": self._page_url(request, before_id),
            }
        )

    @staticmethod
    def _page_url(request: Request, before_id: int | None) -> str | None:
        if before_id is None:
            return None
        query = request.query_params.copy()
        query["cursor"] = encode_cursor(before_id)
        return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
