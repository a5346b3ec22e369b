from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GuestLinksConfig(AppConfig):
    name = "guestlinks"
    verbose_name = _("Guest links")

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
        # The development outbox shows senders the messages their links caused.
        from guestlinks.services.messages import MESSAGE_CONCERNING
        from notifications.senders import register_sender_concerns

        register_sender_concerns(
            MESSAGE_CONCERNING,
            lambda user: GuestLink.objects.filter(created_by_id=user.pk).values_list(
                "pk", flat=True
            ),
        )
