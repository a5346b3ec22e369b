from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from notifications.fields import EncryptedTextField


class Channel(models.TextChoices):
    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")


class MessageStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed, will retry")
    DEAD = "dead", _("Undeliverable")


class Message(models.Model):
    """One email or SMS in the outbox, rendered once in the recipient's language when queued.

    Delivery moves it QUEUED -> SENDING -> SENT, or SENDING -> FAILED (tried again at
    ``next_attempt_at``) -> ... -> DEAD. Every move is a conditional UPDATE on ``status`` (and
    ``attempts``), so two workers handed the same message send it once (``delivery.deliver_batch``).
    What it is about is recorded as text (``concerning_type``/``concerning_id``), not as a foreign
    key: the outbox depends on no feature app and outlives the rows it mentions.
    """

    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)
    recipient = models.CharField(
        _("recipient"), max_length=254, help_text=_("Email address or E.164 mobile number.")
    )
    language = models.CharField(_("language"), max_length=8)
    template = models.CharField(_("template"), max_length=64)
    # Secrets the body needs (links, codes) are redacted here: the rendered body is their only copy.
    context = models.JSONField(_("context"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    # The texts are encrypted in the database (notifications.encryption), so that a copy of it
    # opens none of the links they carry. max_length bounds the subject, not its ciphertext.
    subject = EncryptedTextField(_("subject"), max_length=255, blank=True)
    body_text = EncryptedTextField(_("text"))
    body_html = EncryptedTextField(_("HTML"), blank=True)
    concerning_type = models.CharField(_("concerning"), max_length=40, blank=True)
    concerning_id = models.CharField(_("concerning id"), max_length=64, blank=True)
    status = models.CharField(
        _("status"), max_length=8, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    provider_id = models.CharField(
        _("provider id"),
        max_length=255,
        blank=True,
        help_text=_("Message-ID of the email, or the SMS provider's message SID."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    # QuerySet.update() bypasses auto_now; every status UPDATE in delivery sets it explicitly.
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    lease_until = models.DateTimeField(
        _("lease until"),
        null=True,
        blank=True,
        help_text=_("Set while a worker sends it; past this time the worker is presumed dead."),
    )
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    # The random token of the claim that last took the message: a worker reads back exactly the
    # rows its claiming UPDATE took (notifications.delivery).
    claim = models.CharField(_("claim"), max_length=32, blank=True, editable=False)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The periodic re-queue: due QUEUED/FAILED messages, and SENDING ones whose lease ran
            # out. Leading with status keeps the millions of SENT rows out of both scans.
            models.Index(fields=["status", "next_attempt_at"], name="message_due"),
            models.Index(fields=["status", "lease_until"], name="message_lease"),
            # "What was sent about this share / link?", and a user's own messages (outbox page).
            models.Index(fields=["concerning_type", "concerning_id"], name="message_concerning"),
            models.Index(fields=["recipient", "-created_at"], name="message_recipient"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.template} #{self.pk}"
