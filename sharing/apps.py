from django.apps import AppConfig


class SharingConfig(AppConfig):
    name = "sharing"
    verbose_name = "Shares"

    def ready(self) -> None:
        # The directory's context menu offers Share, and a share's SMS code, once verified in a
        # session, becomes a source of study access. Both idempotent.
        from portal import decisions
        from sharing import access, menu
        from sharing.models import Share, ShareRecipient

        access.register()
        menu.register()
        decisions.watch(Share, ShareRecipient)
        decisions.watch_relation(ShareRecipient.entries.through)
