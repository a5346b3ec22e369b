"""REST API: shares (API.md, "Shares").

The same service as the Share dialog: the serializers parse and shape, the service decides.
Rules broken answer 400 naming the field and nothing is shared. A study the caller may not see
answers 400 on "studies" with the same words as one that does not exist; a share the caller may
neither see nor remove answers 404.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Q
from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sharing.models import RecipientKind, Share
from sharing.services import (
    MAX_LABEL_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_REASON_LENGTH,
    MAX_RECIPIENTS,
    Recipient,
    ShareOptions,
    may_remove_share,
    remove_share,
    share_studies,
    summary_of,
)
from studies.access import user_study_access, visible_worklists
from studies.models import AccessLevel, Study
from studies.selectors import MAX_ID

KINDS = [kind.value for kind in RecipientKind]


class RecipientInputSerializer(serializers.Serializer):
    user = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    group = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    location = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    share_code = serializers.CharField(required=False, max_length=16)
    email = serializers.CharField(required=False, max_length=254)

    def to_internal_value(self, data):
        # Exactly one known key: an unknown one would otherwise be dropped in silence.
        if not isinstance(data, dict) or len(data) != 1 or set(data) - set(KINDS):
            raise serializers.ValidationError(
                _("Name exactly one of “user”, “group”, “location”, “share_code” or “email”.")
            )
        return super().to_internal_value(data)


class ShareCreateSerializer(serializers.Serializer):
    studies = serializers.ListField(
        child=serializers.CharField(max_length=64), min_length=1, max_length=500
    )
    recipients = RecipientInputSerializer(many=True, max_length=MAX_RECIPIENTS)
    access = serializers.ChoiceField(choices=AccessLevel.choices)
    reason = serializers.CharField(
        max_length=MAX_REASON_LENGTH, help_text="Registered and audited; never shown."
    )
    patient_agreed = serializers.BooleanField(help_text="Must be true.")
    valid_until = serializers.DateField(required=False, allow_null=True, default=None)
    unlimited = serializers.BooleanField(default=False)
    language = serializers.ChoiceField(
        choices=[code for code, _name in settings.LANGUAGES],
        required=False,
        allow_null=True,
        default=None,
    )
    label = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_LABEL_LENGTH
    )
    urgent = serializers.BooleanField(default=False)
    anonymize = serializers.BooleanField(default=False)
    allow_further_sharing = serializers.BooleanField(default=False)
    message = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_MESSAGE_LENGTH
    )
    two_factor = serializers.BooleanField(default=False)
    send_mail = serializers.BooleanField(default=False)

    def recipients_list(self) -> list[Recipient]:
        return [
            Recipient(kind=kind, value=value)
            for item in self.validated_data["recipients"]
            for kind, value in item.items()
        ]

    def options(self) -> ShareOptions:
        data = self.validated_data
        names = (
            "access",
            "reason",
            "patient_agreed",
            "valid_until",
            "unlimited",
            "language",
            "label",
            "urgent",
            "anonymize",
            "allow_further_sharing",
            "message",
            "two_factor",
            "send_mail",
        )
        return ShareOptions(**{name: data[name] for name in names})


_RECIPIENT = inline_serializer(
    "ShareRecipientOut",
    fields={
        "kind": serializers.ChoiceField(choices=KINDS),
        "id": serializers.IntegerField(allow_null=True),
        "name": serializers.CharField(),
        "pending": serializers.BooleanField(),
    },
    many=True,
)


class ShareSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    summary = serializers.CharField()
    recipients = _RECIPIENT
    studies = serializers.ListField(child=serializers.CharField())
    valid_until = serializers.DateField(allow_null=True)
    access = serializers.CharField()
    anonymize = serializers.BooleanField()
    allow_further_sharing = serializers.BooleanField()
    label = serializers.CharField()
    urgent = serializers.BooleanField()
    sender = serializers.CharField()
    created_at = serializers.DateTimeField()
    removed_at = serializers.DateTimeField(allow_null=True)


def _recipient_data(recipient) -> dict[str, Any]:
    if recipient.kind == RecipientKind.USER and recipient.user is not None:
        target_id, name = recipient.user.pk, str(recipient.user)
    elif recipient.kind == RecipientKind.GROUP and recipient.group is not None:
        target_id, name = recipient.group.pk, str(recipient.group)
    elif recipient.kind == RecipientKind.LOCATION and recipient.location is not None:
        target_id, name = recipient.location.pk, str(recipient.location)
    elif recipient.kind == RecipientKind.EMAIL:
        target_id, name = (recipient.user.pk if recipient.user else None), recipient.email
    else:
        target_id = recipient.worklist_id
        name = str(recipient.worklist) if recipient.worklist else ""
    return {"kind": recipient.kind, "id": target_id, "name": name, "pending": recipient.pending}


def share_data(share: Share) -> dict[str, Any]:
    recipients = share.recipients.select_related(
        "user", "group__organization", "location__organization", "worklist"
    )
    return {
        "id": share.pk,
        "summary": summary_of(share),
        "recipients": [_recipient_data(r) for r in recipients],
        "studies": list(share.studies.values_list("study_uid", flat=True)),
        "valid_until": share.valid_until,
        "access": share.level,
        "anonymize": share.anonymize,
        "allow_further_sharing": share.allow_further_sharing,
        "label": share.label,
        "urgent": share.urgent,
        "sender": str(share.sender),
        "created_at": share.created_at,
        "removed_at": share.removed_at,
    }


_ERROR = inline_serializer("ShareError", fields={"detail": serializers.CharField()})


class ShareListCreateView(APIView):
    """Share studies; list the shares the caller sent or received."""

    @extend_schema(
        operation_id="shares_list",
        parameters=[
            OpenApiParameter("direction", str, enum=["sent", "received"], default="sent"),
        ],
        responses={200: ShareSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        direction = request.query_params.get("direction", "sent")
        if direction == "sent":
            shares = Share.objects.filter(sender=request.user)
        elif direction == "received":
            worklists = visible_worklists(request.user).values("pk")
            shares = Share.objects.filter(
                Q(recipients__worklist__in=worklists) | Q(recipients__user=request.user),
                removed_at__isnull=True,
            ).distinct()
        else:
            raise ValidationError({"direction": [_("Choose “sent” or “received”.")]})
        shares = shares.select_related("sender")[:200]
        return Response(ShareSerializer([share_data(s) for s in shares], many=True).data)

    @extend_schema(
        operation_id="shares_create",
        request=ShareCreateSerializer,
        responses={201: ShareSerializer, 400: OpenApiTypes.OBJECT, 403: _ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = ShareCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        studies = []
        for uid in dict.fromkeys(serializer.validated_data["studies"]):
            study = Study.objects.select_related("patient").filter(study_uid=uid).first()
            # Unknown and invisible studies answer alike: nothing about their existence.
            if study is None or user_study_access(request.user, study) is None:
                raise ValidationError({"studies": [_("No such study: %(uid)s.") % {"uid": uid}]})
            studies.append(study)
        share = share_studies(
            sender=request.user,
            studies=studies,
            recipients=serializer.recipients_list(),
            options=serializer.options(),
            request=request,
        )
        return Response(ShareSerializer(share_data(share)).data, status=status.HTTP_201_CREATED)


class ShareDetailView(APIView):
    """Remove a share (its sender, an administrator of the sending organization): access ends
    at once."""

    @extend_schema(operation_id="shares_destroy", responses={204: None, 404: _ERROR})
    def delete(self, request: Request, pk: int) -> Response:
        share = Share.objects.filter(pk=pk).first() if pk <= MAX_ID else None
        if share is None or not may_remove_share(request.user, share):
            raise Http404(_("No such share."))
        remove_share(user=request.user, share=share, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)
