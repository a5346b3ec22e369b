"""The outbox in the Django admin: what was sent, what is waiting, what failed and why.

Rows are read-only (they are a record of what left the portal). Staff allowed to change messages
may queue failed or dead ones again. Bodies carry links and one-time codes: the list never shows
them in clear, and the detail page shows them in clear to superusers only.
"""

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from notifications.backends import mask_codes_and_links
from notifications.models import Channel, Message
from notifications.services import retry_messages

if TYPE_CHECKING:
    # The shape of fieldsets, which django-stubs names (it does not exist at run time).
    from django.contrib.admin.options import _FieldsetSpec


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "channel",
        "template",
        "recipient",
        "summary",
        "status",
        "attempts",
        "short_error",
        "sent_at",
    )
    list_filter = ("status", "channel", "template")
    search_fields = ("recipient",)
    search_help_text = _("Email address or mobile number (or part of it).")
    date_hierarchy = "created_at"
    list_per_page = 100
    show_full_result_count = False
    actions = ["retry"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "channel",
                    "recipient",
                    "language",
                    "template",
                    "concerning_type",
                    "concerning_id",
                    "status",
                    "attempts",
                    "last_error",
                    "provider_id",
                )
            },
        ),
        (
            _("Times"),
            {"fields": ("created_at", "next_attempt_at", "lease_until", "sent_at", "updated_at")},
        ),
        (_("Content"), {"fields": ("subject", "body_masked", "context_pretty")}),
    )
    readonly_fields = (
        "channel",
        "recipient",
        "language",
        "template",
        "concerning_type",
        "concerning_id",
        "status",
        "attempts",
        "last_error",
        "provider_id",
        "created_at",
        "next_attempt_at",
        "lease_until",
        "sent_at",
        "updated_at",
        "subject",
        "body_masked",
        "body_clear",
        "context_pretty",
    )

    # --- A record, not an editable table -------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.change_message")

    # --- Columns and fields --------------------------------------------------------------

    @admin.display(description=_("summary"))
    def summary(self, obj: Message) -> str:
        # SMS have no subject; their text is shown masked, for superusers too: list pages end
        # up on screens and in screenshots.
        if obj.channel == Channel.SMS:
            return Truncator(mask_codes_and_links(obj.body_text)).chars(80)
        return str(obj.subject)

    @admin.display(description=_("last error"))
    def short_error(self, obj: Message) -> str:
        return Truncator(obj.last_error).chars(80)

    @admin.display(description=_("text"))
    def body_masked(self, obj: Message) -> str | Promise:
        return self._body(obj, mask_codes_and_links)

    @admin.display(description=_("text"))
    def body_clear(self, obj: Message) -> str | Promise:
        return self._body(obj, str)

    def _body(self, obj: Message, show: Callable[[str], str]) -> str | Promise:
        if not obj.body_text:
            return _("(erased after delivery)") if obj.sent_at else ""
        return format_html("<pre>{}</pre>", show(obj.body_text))

    @admin.display(description=_("context"))
    def context_pretty(self, obj: Message) -> SafeString:
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.context, indent=2, sort_keys=True, ensure_ascii=False)
        )

    def get_fieldsets(self, request: HttpRequest, obj: Message | None = None) -> "_FieldsetSpec":
        if not request.user.is_superuser:
            return self.fieldsets
        return tuple(
            (
                name,
                {
                    **options,
                    "fields": tuple(
                        "body_clear" if field == "body_masked" else field
                        for field in options["fields"]
                    ),
                },
            )
            for name, options in self.fieldsets
        )

    # --- Retry ---------------------------------------------------------------------------

    @admin.action(description=_("Retry delivery"), permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        # The administration admits only logged-in staff.
        actor = request.user if request.user.is_authenticated else None
        retried = retry_messages(message_ids=selected, actor=actor, request=request)
        if retried:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message queued again.",
                    "%(count)d messages queued again.",
                    len(retried),
                )
                % {"count": len(retried)},
                messages.SUCCESS,
            )
        skipped = len(selected) - len(retried)
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message was left alone: only failed or undeliverable messages "
                    "can be retried.",
                    "%(count)d messages were left alone: only failed or undeliverable messages "
                    "can be retried.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )
