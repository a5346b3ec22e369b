from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from studies.models import Folder, Study, Worklist


class TargetKind(models.TextChoices):
    STUDY = "study", _("Study")
    WORKLIST = "worklist", _("Worklist")
    FOLDER = "folder", _("Folder")


class LinkState(models.TextChoices):
    ACTIVE = "active", _("Active")
    DELETED = "deleted", _("Deleted")
    REVOKED = "revoked", _("Revoked")


class GuestLink(models.Model):
    """A secure, temporary link to a study, a worklist or a folder (Send Link / New Guest Link).

    Whether it still opens is derived from its state, expiry, uses and failure counters at each
    request (see guestlinks.services), never from a flag a job has to maintain.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", verbose_name=_("organization")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    target_kind = models.CharField(
        max_length=10, choices=TargetKind.choices, verbose_name=_("target kind")
    )
    study = models.ForeignKey(
        Study,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="guest_links",
        verbose_name=_("study"),
    )
    worklist = models.ForeignKey(
        Worklist,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="guest_links",
        verbose_name=_("worklist"),
    )
    folder = models.ForeignKey(
        Folder,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="guest_links",
        verbose_name=_("folder"),
    )
    include_priors = models.BooleanField(default=False, verbose_name=_("include priors"))
    # The token is derived from the salt with SECRET_KEY (guestlinks.tokens); only its keyed
    # digest is stored, for lookup.
    token_salt = models.CharField(max_length=64, verbose_name=_("token salt"))
    token_digest = models.CharField(max_length=64, unique=True, verbose_name=_("token digest"))

    # Options of the Send Link dialog
    email = models.EmailField(blank=True, verbose_name=_("email"))
    mobile = models.CharField(max_length=20, blank=True, verbose_name=_("mobile"))
    language = models.CharField(max_length=5, default="en", verbose_name=_("language"))
    message = models.TextField(blank=True, verbose_name=_("message"))
    max_uses = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("max uses"))
    expires_at = models.DateTimeField(null=True, blank=True, verbose_name=_("expires at"))
    login_required = models.BooleanField(default=False, verbose_name=_("login required"))
    password_hash = models.CharField(max_length=200, blank=True, verbose_name=_("password hash"))
    password_is_birth_date = models.BooleanField(
        default=False, verbose_name=_("password is birth date")
    )
    max_password_attempts = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("max password attempts")
    )
    require_email_confirmation = models.BooleanField(
        default=False, verbose_name=_("require email confirmation")
    )
    sms_code_required = models.BooleanField(default=False, verbose_name=_("sms code required"))

    # Counters and state, changed only by conditional UPDATEs in guestlinks.services
    uses = models.PositiveIntegerField(default=0, verbose_name=_("uses"))
    opens = models.PositiveIntegerField(
        default=0,
        help_text=_(
            "Visits to the link page; reloads from one address within ten minutes count once."
        ),
        verbose_name=_("opens"),
    )
    password_failures = models.PositiveIntegerField(default=0, verbose_name=_("password failures"))
    code_failures = models.PositiveIntegerField(default=0, verbose_name=_("code failures"))
    codes_sent = models.PositiveIntegerField(default=0, verbose_name=_("codes sent"))
    confirmed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("confirmed at"))
    state = models.CharField(
        max_length=10, choices=LinkState.choices, default=LinkState.ACTIVE, verbose_name=_("state")
    )
    ended_at = models.DateTimeField(null=True, blank=True, verbose_name=_("ended at"))
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("ended by"),
    )
    end_reason = models.TextField(blank=True, verbose_name=_("end reason"))

    class Meta:
        verbose_name = _("guest link")
        verbose_name_plural = _("guest links")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(target_kind="study", study__isnull=False)
                    | models.Q(target_kind="worklist", worklist__isnull=False)
                    | models.Q(target_kind="folder", folder__isnull=False)
                ),
                name="guestlink_has_target",
            )
        ]
        indexes = [models.Index(fields=["study", "-created_at"], name="guestlink_study_recent")]

    def __str__(self) -> str:
        # Never the token, never patient data: this reaches logs and admin titles.
        return _("Guest link %(id)s") % {"id": self.pk}


class ConfirmationToken(models.Model):
    """The first email of a two-step link: proof that the recipient reads that mailbox."""

    link = models.ForeignKey(GuestLink, on_delete=models.CASCADE, related_name="confirmations")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("confirmation token")
        verbose_name_plural = _("confirmation tokens")

    def __str__(self) -> str:
        return f"Confirmation {self.pk} of guest link {self.link_id}"


class SmsCode(models.Model):
    """A six-digit one-time code sent by SMS; stored hashed, single use, valid ten minutes.
    A resend replaces the previous code (``replaced_at``)."""

    link = models.ForeignKey(GuestLink, on_delete=models.CASCADE, related_name="sms_codes")
    code_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("sms code")
        verbose_name_plural = _("sms codes")
        indexes = [models.Index(fields=["link", "-created_at"], name="smscode_link_recent")]

    def __str__(self) -> str:
        return f"SMS code {self.pk} of guest link {self.link_id}"
