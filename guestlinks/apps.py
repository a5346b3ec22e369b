from django.apps import AppConfig


class GuestLinksConfig(AppConfig):
    name = "guestlinks"
    verbose_name = "Guest links"

    def ready(self) -> None:
        # Session-held grants become a source of study access, the directory's context menu
        # offers Send Link, and the study page shows the study's links. All idempotent.
        from guestlinks import access, menu, viewer
        from guestlinks.models import GuestLink
        from portal import decisions

        access.register()
        menu.register()
        viewer.register()
        decisions.watch(GuestLink)
