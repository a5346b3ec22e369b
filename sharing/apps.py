from django.apps import AppConfig


class SharingConfig(AppConfig):
    name = "sharing"
    verbose_name = "Shares"

    def ready(self) -> None:
        # The directory's context menu offers Share, and a share's SMS code, once verified in a
        # session, becomes a source of study access. Both idempotent.
        from sharing import access, menu

        access.register()
        menu.register()
