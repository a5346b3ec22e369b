from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SharingConfig(AppConfig):
    name = "sharing"
    verbose_name = _("Shares")

    def ready(self) -> None:
        # The directory's context menu offers Share, and a share's SMS code, once verified in a
        # session, becomes a source of study access. Both idempotent.
        from portal import decisions
        from sharing import access, menu
        from sharing.models import Share, ShareRecipient

        access.register()
        menu.register()
        decisions.watch(Share, ShareRecipient)
        # The development outbox shows senders the messages their shares caused.
        from notifications.senders import register_sender_concerns

        register_sender_concerns(
            "share",
            lambda user: Share.objects.filter(sender_id=user.pk).values_list("pk", flat=True),
        )
        decisions.watch_relation(ShareRecipient.entries.through)
