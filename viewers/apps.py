from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ViewersConfig(AppConfig):
    name = "viewers"
    verbose_name = _("External viewers")

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from portal import decisions
        from viewers import menu, viewer
        from viewers.models import ViewerToken
        from viewers.services import end_session_tokens

        menu.register()
        viewer.register()

        # A token deleted (logout, an ended viewing) stops at its next request.
        decisions.watch(ViewerToken, saves=False)
        user_logged_out.connect(end_session_tokens, dispatch_uid="viewers-end-session-tokens")
