"""REST API: guest links (API.md, "Guest links").

The same services as the Send Link dialog: the serializers parse and shape, the service decides.
A target or link the caller may not see answers 404 like one that does not exist; a visible one
the caller's role may not act on answers 403. Field errors (a missing acknowledgement, an option
the organization's policy disables, an invalid email or phone) answer 400 naming the field, and
nothing is created.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import api_user
from guestlinks.models import GuestLink
from guestlinks.presentation import mailto_for
from guestlinks.selectors import LinkRow, LinkTarget, links_for_study, sees_target, visible_target
from guestlinks.services.creation import (
    MAX_MESSAGE_LENGTH,
    MAX_PASSWORD_LENGTH,
    LinkOptions,
    create_link,
)
from guestlinks.services.ending import delete_link
from guestlinks.services.state import link_status
from portal.http import MAX_ID
from portal.qr import qr_svg

# --- Serializers (validate the body, shape the output, decide nothing) --------------------------


class GuestLinkTargetInputSerializer(serializers.Serializer):
    study = serializers.CharField(required=False, max_length=64, help_text="Study instance UID.")
    worklist = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    folder = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len([key for key in ("study", "worklist", "folder") if attrs.get(key)]) != 1:
            raise serializers.ValidationError(
                _("Name exactly one of “study”, “worklist” or “folder”.")
            )
        return attrs


def _count(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, allow_null=True, default=None, **kwargs)


class GuestLinkCreateSerializer(serializers.Serializer):
    target = GuestLinkTargetInputSerializer()
    acknowledged = serializers.BooleanField(
        default=False,
        help_text=(
            "Must be true: the sender understands that authorization cannot be removed once "
            "the secure link is sent."
        ),
    )
    email = serializers.CharField(required=False, allow_blank=True, max_length=254, default="")
    mobile = serializers.CharField(required=False, allow_blank=True, max_length=32, default="")
    max_uses = _count(help_text="Limit the number of uses; null: no limit.")
    expires_in_days = _count(help_text="With or without hours; neither: the default validity.")
    expires_in_hours = _count()
    login_required = serializers.BooleanField(default=False)
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        max_length=MAX_PASSWORD_LENGTH,
        write_only=True,
        help_text="Stored hashed only and never sent: give it to the recipient yourself.",
    )
    password_is_birth_date = serializers.BooleanField(
        default=False, help_text="The patient's date of birth as YYYYMMDD; a password overrides."
    )
    max_password_attempts = _count()
    require_email_confirmation = serializers.BooleanField(default=False)
    sms_code = serializers.BooleanField(
        default=False, help_text="The recipient also enters a code sent by SMS to the mobile."
    )
    include_priors = serializers.BooleanField(default=False)
    message = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_MESSAGE_LENGTH
    )
    language = serializers.ChoiceField(
        choices=[code for code, _name in settings.LANGUAGES],
        required=False,
        allow_null=True,
        default=None,
        help_text="Language of the email and SMS; default: the sender's.",
    )

    def options(self) -> LinkOptions:
        data = self.validated_data
        return LinkOptions(
            **{
                name: data[name]
                for name in (
                    "email",
                    "mobile",
                    "max_uses",
                    "expires_in_days",
                    "expires_in_hours",
                    "login_required",
                    "password",
                    "password_is_birth_date",
                    "max_password_attempts",
                    "require_email_confirmation",
                    "sms_code",
                    "include_priors",
                    "message",
                    "language",
                )
            }
        )


_OPTIONS = inline_serializer(
    "GuestLinkOptions",
    fields={
        "email": serializers.CharField(),
        "mobile": serializers.CharField(),
        "max_uses": serializers.IntegerField(allow_null=True),
        "expires_at": serializers.DateTimeField(allow_null=True),
        "login_required": serializers.BooleanField(),
        "password_required": serializers.BooleanField(),
        "password_is_birth_date": serializers.BooleanField(),
        "max_password_attempts": serializers.IntegerField(allow_null=True),
        "require_email_confirmation": serializers.BooleanField(),
        "sms_code": serializers.BooleanField(),
        "include_priors": serializers.BooleanField(),
        "message": serializers.CharField(),
        "language": serializers.CharField(),
    },
)
_TARGET = inline_serializer(
    "GuestLinkTarget",
    fields={
        "kind": serializers.ChoiceField(choices=["study", "worklist", "folder"]),
        "study": serializers.CharField(required=False),
        "worklist": serializers.IntegerField(required=False),
        "folder": serializers.IntegerField(required=False),
    },
)


class CreatedGuestLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    mailto = serializers.CharField(help_text="A mailto: URI with the link in its body.")
    qr_svg = serializers.CharField(
        allow_null=True, help_text="Inline SVG QR code of the mailto:; null without an email."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    uses_left = serializers.IntegerField(allow_null=True)
    state = serializers.CharField()
    options = _OPTIONS
    target = _TARGET
    created_at = serializers.DateTimeField()


class GuestLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField(
        allow_null=True, help_text="The link again, while it still opens; null afterwards."
    )
    state = serializers.CharField(help_text="active, expired, used_up, locked, deleted or revoked.")
    state_label = serializers.CharField()
    target = _TARGET
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    uses = serializers.IntegerField()
    uses_left = serializers.IntegerField(allow_null=True)
    opens = serializers.IntegerField()
    ended_at = serializers.DateTimeField(allow_null=True)
    end_reason = serializers.CharField()
    can_delete = serializers.BooleanField()
    options = _OPTIONS


def link_options(link: GuestLink) -> dict[str, Any]:
    """The options a link was made with: never the password or its hash, never the token."""
    return {
        "email": link.email,
        "mobile": link.mobile,
        "max_uses": link.max_uses,
        "expires_at": link.expires_at,
        "login_required": link.login_required,
        "password_required": bool(link.password_hash),
        "password_is_birth_date": link.password_is_birth_date,
        "max_password_attempts": link.max_password_attempts,
        "require_email_confirmation": link.require_email_confirmation,
        "sms_code": link.sms_code_required,
        "include_priors": link.include_priors,
        "message": link.message,
        "language": link.language,
    }


def link_target(link: GuestLink) -> dict[str, Any]:
    if link.study is not None:
        return {"kind": link.target_kind, "study": link.study.study_uid}
    if link.worklist_id:
        return {"kind": link.target_kind, "worklist": link.worklist_id}
    return {"kind": link.target_kind, "folder": link.folder_id}


def _row_data(row: LinkRow) -> dict[str, Any]:
    link = row.link
    creator = link.created_by
    return {
        "id": link.pk,
        "url": row.url,
        "state": row.status.state,
        "state_label": row.status.label,
        "target": link_target(link),
        "created_at": link.created_at,
        "created_by": creator.display_name if creator else None,
        "expires_at": link.expires_at,
        "uses": link.uses,
        "uses_left": row.status.uses_left,
        "opens": link.opens,
        "ended_at": link.ended_at,
        "end_reason": link.end_reason,
        "can_delete": row.can_delete,
        "options": link_options(link),
    }


_ERROR = inline_serializer("GuestLinkError", fields={"detail": serializers.CharField()})
_FIELD_ERRORS = OpenApiTypes.OBJECT


# --- Views ---------------------------------------------------------------------------------------


class GuestLinkCreateView(APIView):
    """Send Link: create a guest link to a study, a worklist or a folder."""

    @extend_schema(
        operation_id="guest_links_create",
        request=GuestLinkCreateSerializer,
        responses={
            201: CreatedGuestLinkSerializer,
            400: _FIELD_ERRORS,
            403: _ERROR,
            404: _ERROR,
        },
        examples=[
            OpenApiExample(
                "A study, by email, two uses, with a password",
                request_only=True,
                value={
                    "target": {"study": "1.2.826.0.1.3680043.10.1000.1"},
                    "acknowledged": True,
                    "email": "gp@example.org",
                    "max_uses": 2,
                    "expires_in_days": 3,
                    "password": "a password you give by phone",
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        # IsAuthenticated, the API's default permission, lets only users in.
        user = api_user(request)
        serializer = GuestLinkCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target_data = serializer.validated_data["target"]
        target = visible_target(
            user,
            study_uid=target_data.get("study"),
            worklist_id=target_data.get("worklist"),
            folder_id=target_data.get("folder"),
        )
        if target is None:
            raise Http404(_("No such study, worklist or folder."))
        created = create_link(
            sender=user,
            target=target,
            options=serializer.options(),
            acknowledged=serializer.validated_data["acknowledged"],
            request=request,
        )
        link = created.link
        mailto = mailto_for(email=link.email, url=created.url, language=link.language)
        body = {
            "id": link.pk,
            "url": created.url,
            "mailto": mailto,
            "qr_svg": qr_svg(mailto) if link.email else None,
            "expires_at": link.expires_at,
            "uses_left": link_status(link).uses_left,
            "state": link_status(link).state,
            "options": link_options(link),
            "target": link_target(link),
            "created_at": link.created_at,
        }
        return Response(CreatedGuestLinkSerializer(body).data, status=status.HTTP_201_CREATED)


class StudyGuestLinksView(APIView):
    """The study's guest links, newest first (permission: view guest links)."""

    @extend_schema(
        operation_id="study_guest_links_list",
        responses={200: GuestLinkSerializer(many=True), 403: _ERROR, 404: _ERROR},
    )
    def get(self, request: Request, study_uid: str) -> Response:
        # IsAuthenticated, the API's default permission, lets only users in.
        user = api_user(request)
        target = visible_target(user, study_uid=study_uid[:64])
        if target is None or target.study is None:
            raise Http404(_("No such study."))
        rows = links_for_study(user, target.study)
        return Response(GuestLinkSerializer([_row_data(row) for row in rows], many=True).data)


class GuestLinkDetailView(APIView):
    """Delete a guest link (permission: delete guest links): it stops opening at once."""

    @extend_schema(
        operation_id="guest_links_destroy",
        responses={204: None, 403: _ERROR, 404: _ERROR},
    )
    def delete(self, request: Request, pk: int) -> Response:
        # IsAuthenticated, the API's default permission, lets only users in.
        user = api_user(request)
        link = (
            GuestLink.objects.select_related("study__organization", "worklist", "folder__worklist")
            .filter(pk=pk)
            .first()
        )
        if link is None or not sees_target(user, LinkTarget.of(link)):
            raise Http404(_("No such guest link."))
        # A visible link the caller's role may not delete: PermissionDenied, answered 403.
        delete_link(user=user, link=link, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)
