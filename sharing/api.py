"""REST API: shares, recipients and favorites (API.md, "Shares").

The same services and selectors as the Share dialog: the serializers parse and shape, the
services decide.
Rules broken answer 400 naming the field and nothing is shared. A study the caller may not see
answers 400 on "studies" with the same words as one that does not exist; a share the caller may
neither see nor remove answers 404.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Model
from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import api_user
from portal.http import MAX_ID
from sharing.models import Favorite, FavoriteKind, RecipientKind, Share, ShareRecipient
from sharing.selectors import (
    MAX_QUERY_LENGTH,
    MIN_QUERY_LENGTH,
    SEARCH_KINDS,
    FavoriteItem,
    RecipientQuery,
    favorites_of,
    may_remove_share,
    received_shares,
    recipient_name,
    search_recipients,
)
from sharing.services.favorites import add_favorite, remove_favorite
from sharing.services.shares import (
    MAX_LABEL_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_REASON_LENGTH,
    MAX_RECIPIENTS,
    Recipient,
    ShareOptions,
    remove_share,
    share_studies,
    studies_seen_by_sender,
    summary_of,
)
from studies.models import AccessLevel, LabelScope

KINDS = [kind.value for kind in RecipientKind]


class RecipientInputSerializer(serializers.Serializer):
    user = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    group = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    location = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    share_code = serializers.CharField(required=False, max_length=16)
    email = serializers.CharField(required=False, max_length=254)

    def to_internal_value(self, data: object) -> dict[str, Any]:
        # Exactly one known key: an unknown one would otherwise be dropped in silence.
        if not isinstance(data, dict) or len(data) != 1 or set(data) - set(KINDS):
            raise serializers.ValidationError(
                _("Name exactly one of “user”, “group”, “location”, “share_code” or “email”.")
            )
        validated: dict[str, Any] = super().to_internal_value(data)
        return validated


class ShareCreateSerializer(serializers.Serializer):
    studies = serializers.ListField(
        child=serializers.CharField(max_length=64), min_length=1, max_length=500
    )
    # many=True makes a ListSerializer, which takes max_length; the stubs' __init__ omits it.
    recipients = RecipientInputSerializer(many=True, max_length=MAX_RECIPIENTS)  # type: ignore[call-arg]
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
    # DRF's metaclass takes declared fields off the class; the stubs see Field.label instead.
    label = serializers.CharField(  # type: ignore[assignment]
        required=False, allow_blank=True, default="", max_length=MAX_LABEL_LENGTH
    )
    label_scope = serializers.ChoiceField(
        choices=LabelScope.choices,
        default=LabelScope.GROUP,
        help_text=(
            "Who sees the label: “group”, everyone who receives the share (the recipient user, "
            "every member of a recipient group or location); “user”, only the users it is "
            "shared with personally (needs one among the recipients)."
        ),
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
            "label_scope",
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
    # DRF's metaclass takes declared fields off the class; the stubs see Field.label instead.
    label = serializers.CharField()  # type: ignore[assignment]
    label_scope = serializers.ChoiceField(
        choices=LabelScope.choices, help_text="Who among the recipients sees the label."
    )
    urgent = serializers.BooleanField()
    sender = serializers.CharField()
    created_at = serializers.DateTimeField()
    removed_at = serializers.DateTimeField(allow_null=True)


def _recipient_data(recipient: ShareRecipient) -> dict[str, Any]:
    # The user, group or location id; an email share's user once registered; a share code's
    # worklist id.
    target: Model | None = recipient.user or recipient.group or recipient.location
    if target is None and recipient.kind != RecipientKind.EMAIL:
        target = recipient.worklist
    return {
        "kind": recipient.kind,
        "id": target.pk if target is not None else None,
        "name": recipient_name(recipient),
        "pending": recipient.pending,
    }


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
        "label_scope": share.label_scope,
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
        # IsAuthenticated, the API's default permission, lets only users in.
        user = api_user(request)
        direction = request.query_params.get("direction", "sent")
        if direction == "sent":
            shares = Share.objects.filter(sender=user)
        elif direction == "received":
            shares = received_shares(user)
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
        # IsAuthenticated, the API's default permission, lets only users in.
        user = api_user(request)
        serializer = ShareCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        uids = list(dict.fromkeys(serializer.validated_data["studies"]))
        seen = studies_seen_by_sender(user, uids, request)
        for uid in uids:
            # Unknown and invisible studies answer alike: nothing about their existence.
            if uid not in seen:
                raise ValidationError({"studies": [_("No such study: %(uid)s.") % {"uid": uid}]})
        studies = [seen[uid][0] for uid in uids]
        share = share_studies(
            sender=user,
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
        # IsAuthenticated, the API's default permission, lets only users in.
        user = api_user(request)
        share = Share.objects.filter(pk=pk).first() if pk <= MAX_ID else None
        if share is None or not may_remove_share(user, share):
            raise Http404(_("No such share."))
        remove_share(user=user, share=share, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Recipients and favorites ------------------------------------------------------------------


class RecipientSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[kind.value for kind in SEARCH_KINDS])
    id = serializers.IntegerField()
    name = serializers.CharField()
    organization = serializers.CharField()
    physician_number = serializers.CharField(required=False, help_text="Users only.")
    email = serializers.CharField(required=False, help_text="Users who made it public only.")
    mobile = serializers.CharField(required=False, help_text="Users who made it public only.")


class RecipientQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=MAX_QUERY_LENGTH,
        help_text=(
            "Words over first name, last name, physician number, and mobile number and email "
            "address where the user made them public; group, location and organization names. "
            f"At least {MIN_QUERY_LENGTH} characters, unless a detailed search field is given."
        ),
    )
    kind = serializers.ChoiceField(
        choices=[kind.value for kind in SEARCH_KINDS], required=False, allow_blank=True
    )
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=MAX_QUERY_LENGTH,
        help_text="Detailed search: the name.",
    )
    physician_number = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=40,
        help_text="Detailed search: users' physician number.",
    )
    organization = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=MAX_QUERY_LENGTH,
        help_text="Detailed search: the organization's name.",
    )

    def query(self) -> RecipientQuery:
        data = self.validated_data
        query = RecipientQuery(
            text=data.get("q", ""),
            kind=data.get("kind") or None,
            name=data.get("name", ""),
            physician_number=data.get("physician_number", ""),
            organization=data.get("organization", ""),
        )
        if query.is_empty:
            raise ValidationError(
                {"q": [_("Type at least %(n)s characters.") % {"n": MIN_QUERY_LENGTH}]}
            )
        return query


class RecipientSearchView(APIView):
    """Find the users, groups and locations the caller could share with."""

    @extend_schema(
        operation_id="recipients_list",
        parameters=[RecipientQuerySerializer],
        responses={200: RecipientSerializer(many=True), 400: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        params = RecipientQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        # IsAuthenticated, the API's default permission, lets only users in.
        results = search_recipients(api_user(request), params.query())
        return Response([result.as_api() for result in results])


class FavoriteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    # The same as recipient.kind; plain text so that the schema has one enum of these kinds.
    kind = serializers.CharField(help_text="user, group or location.")
    recipient = RecipientSerializer()
    created_at = serializers.DateTimeField()


class FavoriteInputSerializer(serializers.Serializer):
    user = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    group = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    location = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)

    def to_internal_value(self, data: object) -> dict[str, Any]:
        if (
            not isinstance(data, dict)
            or len(data) != 1
            or set(data) - {kind.value for kind in FavoriteKind}
        ):
            raise serializers.ValidationError(
                {"non_field_errors": [_("Name exactly one of “user”, “group” or “location”.")]}
            )
        validated: dict[str, Any] = super().to_internal_value(data)
        return validated


def _favorite_data(item: FavoriteItem) -> dict[str, Any]:
    return {
        "id": item.favorite.pk,
        "kind": item.favorite.kind,
        "recipient": item.recipient.as_api(),
        "created_at": item.favorite.created_at,
    }


class FavoriteListCreateView(APIView):
    """The caller's favorite recipients (the star of the Share dialog)."""

    @extend_schema(operation_id="favorites_list", responses={200: FavoriteSerializer(many=True)})
    def get(self, request: Request) -> Response:
        # IsAuthenticated, the API's default permission, lets only users in.
        owner = api_user(request)
        return Response([_favorite_data(item) for item in favorites_of(owner)])

    @extend_schema(
        operation_id="favorites_create",
        request=FavoriteInputSerializer,
        responses={
            201: FavoriteSerializer,
            200: FavoriteSerializer,
            400: OpenApiTypes.OBJECT,
            403: _ERROR,
        },
    )
    def post(self, request: Request) -> Response:
        # IsAuthenticated, the API's default permission, lets only users in.
        owner = api_user(request)
        serializer = FavoriteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ((kind, target_id),) = serializer.validated_data.items()
        favorite, created = add_favorite(owner=owner, kind=kind, target_id=target_id)
        item = next(i for i in favorites_of(owner) if i.favorite.pk == favorite.pk)
        return Response(
            _favorite_data(item), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class FavoriteDetailView(APIView):
    @extend_schema(operation_id="favorites_destroy", responses={204: None, 404: _ERROR})
    def delete(self, request: Request, pk: int) -> Response:
        # IsAuthenticated, the API's default permission, lets only users in.
        owner = api_user(request)
        favorite = Favorite.objects.filter(pk=pk, owner=owner).first() if pk <= MAX_ID else None
        if favorite is None:
            raise Http404(_("No such favorite."))
        remove_favorite(owner=owner, favorite=favorite)
        return Response(status=status.HTTP_204_NO_CONTENT)
