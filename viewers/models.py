"""Viewer tokens: what an external DICOMweb viewer (OHIF, on its own origin) is given to read
the studies a principal opened in it, and nothing else."""

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ViewerToken(models.Model):
    """A short-lived, read-only DICOMweb credential (``Authorization: Bearer``), made when a
    user, a share's recipient or a guest past a link's gates opens studies in the viewer.

    Only its keyed digest is stored. It stands for whoever made it: the user (``user``) or, for a
    guest, nobody but the session's grants it carries (``grants``, as the session held them);
    it reaches at most ``study_ids``, and at each request only what ``studies.access`` still
    grants that principal. It ends at ``expires_at`` (at most ``VIEWER_TOKEN_SECONDS`` after it
    was made, never after the access it was made from), and with the portal session it was made
    in (``session_digest``) when that session logs out."""

    digest = models.CharField(_("digest"), max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="viewer_tokens",
        verbose_name=_("user"),
    )
    session_digest = models.CharField(_("session"), max_length=64, db_index=True)
    study_ids = models.JSONField(_("studies"))
    grants = models.JSONField(_("grants carried"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), db_index=True)

    class Meta:
        verbose_name = _("viewer token")
        verbose_name_plural = _("viewer tokens")

    def __str__(self) -> str:
        return f"Viewer token {self.pk}"

    def is_live(self, now: datetime | None = None) -> bool:
        return (now or timezone.now()) < self.expires_at
