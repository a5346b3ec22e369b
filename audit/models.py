from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Outcome(models.TextChoices):
    """DICOM PS3.15 EventOutcomeIndicator."""

    SUCCESS = "0", _("Success")
    MINOR_FAILURE = "4", _("Minor failure")
    SERIOUS_FAILURE = "8", _("Serious failure")
    MAJOR_FAILURE = "12", _("Major failure")


class Action(models.TextChoices):
    """What happened. Each maps to a DICOM PS3.15 audit event in ``audit.codes``."""

    LOGIN = "login", _("Login")
    LOGIN_FAILED = "login_failed", _("Failed login")
    LOGIN_THROTTLED = "login_throttled", _("Login throttled")
    LOGOUT = "logout", _("Logout")
    PASSWORD_CHANGED = "password_changed", _("Password changed")
    TWO_FACTOR_ENABLED = "two_factor_enabled", _("Two-factor enabled")
    TWO_FACTOR_FAILED = "two_factor_failed", _("Wrong two-factor code")
    TWO_FACTOR_DISABLED = "two_factor_disabled", _("Two-factor removed")
    SESSION_EXPIRED = "session_expired", _("Session expired")
    TOKEN_ISSUED = "token_issued", _("API token issued")
    STUDY_VIEWED = "study_viewed", _("Study viewed")
    FRAMES_RENDERED = "frames_rendered", _("Frames rendered")
    STUDY_DOWNLOADED = "study_downloaded", _("Study downloaded")
    STUDY_UPLOADED = "study_uploaded", _("Instances uploaded")
    INSTANCES_RECEIVED = "instances_received", _("Instances received over DICOM")
    STUDIES_QUERIED = "studies_queried", _("Studies listed or searched")
    INSTANCES_RETRIEVED = "instances_retrieved", _("Instances retrieved over DICOMweb")
    ASSOCIATION_REFUSED = "association_refused", _("DICOM association refused")
    UPLOAD_REJECTED = "upload_rejected", _("Upload rejected")
    REPORT_CHANGED = "report_changed", _("Report changed")
    AUDIT_READ = "audit_read", _("Audit trail read")
    ACCESS_DENIED = "access_denied", _("Access denied")
    AUDIT_VERIFIED = "audit_verified", _("Audit chain verified")
    POLICY_CHANGED = "policy_changed", _("Sharing policy changed")
    TOKEN_REVOKED = "token_revoked", _("API token revoked")
    LINK_CREATED = "link_created", _("Guest link created")
    LINK_EMAILED = "link_emailed", _("Guest link emailed")
    LINK_CODE_SENT = "link_code_sent", _("Guest link code sent by SMS")
    LINK_CONFIRMED = "link_confirmed", _("Guest link email confirmed")
    LINK_OPENED = "link_opened", _("Guest link page opened")
    LINK_USED = "link_used", _("Guest link used (gates passed)")
    LINK_WRONG_PASSWORD = "link_wrong_password", _("Guest link: wrong password")
    LINK_WRONG_CODE = "link_wrong_code", _("Guest link: wrong SMS code")
    LINK_REFUSED = "link_refused", _("Guest link refused (expired, used up, ended or locked)")
    LINK_DELETED = "link_deleted", _("Guest link deleted")
    LINK_REVOKED = "link_revoked", _("Guest link revoked")
    SHARE_CREATED = "share_created", _("Share created")
    SHARE_REMOVED = "share_removed", _("Share removed")
    SHARE_CODE_SENT = "share_code_sent", _("Share code sent by SMS")
    SHARE_CODE_VERIFIED = "share_code_verified", _("Share opened with its SMS code")
    SHARE_WRONG_CODE = "share_wrong_code", _("Share: wrong SMS code")
    SHARE_BLOCKED = "share_blocked", _("Share blocked after wrong SMS codes")
    SHARE_UNBLOCKED = "share_unblocked", _("Share unblocked")
    SHARE_ACTIVATED = "share_activated", _("Email share activated on registration")
    USER_REGISTERED = "user_registered", _("User registered from an invitation")
    MESSAGE_DEAD = "message_dead", _("Message undeliverable")
    MESSAGE_RETRIED = "message_retried", _("Message delivery retried")
    FOLDER_CREATED = "folder_created", _("Folder created")
    FOLDER_RENAMED = "folder_renamed", _("Folder renamed")
    FOLDER_MOVED = "folder_moved", _("Folder moved")
    FOLDER_DELETED = "folder_deleted", _("Folder deleted")
    STUDIES_FILED = "studies_filed", _("Studies filed in a folder")
    ACCOUNTS_CHANGED = (
        "accounts_changed",
        _("Users, memberships, roles, locations or groups changed"),
    )


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Bulk writes are refused like single ones: ``update()`` and ``delete()`` would rewrite or
    remove history without going through the hash chain. (The database triggers installed by
    migration 0002 refuse the same statements from any other client.)"""

    def update(self, **kwargs: object) -> NoReturn:
        raise PermissionError("Audit events are append-only.")

    # Django's own update() and delete() carry these marks (templates never call them, a manager
    # does not copy delete()); django-stubs declares them as plain methods, without the marks.
    update.alters_data = True  # type: ignore[attr-defined]

    def delete(self) -> NoReturn:
        raise PermissionError("Audit events are append-only.")

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class AuditEvent(models.Model):
    """One line of the audit trail. Append-only: each event stores the hash of the event before
    it in its chain (its organization's, or the chain of events of no organization) and its own,
    an HMAC of its content under ``AUDIT_KEY``, so any change or deletion breaks the chain and
    cannot be covered up without the key (``manage.py verify_audit``). Saving an existing event
    or deleting one raises."""

    at = models.DateTimeField(db_index=True, verbose_name=_("at"))
    # DO_NOTHING, not SET_NULL: deleting a user must not rewrite the trail (the database refuses
    # the UPDATE, and actor_id is hashed). The id stays as recorded; actor_label names the person.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        verbose_name=_("actor"),
    )
    # Who acted, as text that outlives the user row: a username or "anonymous recipient".
    actor_label = models.CharField(max_length=150, verbose_name=_("actor label"))
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name=_("ip"))
    action = models.CharField(
        max_length=40, choices=Action.choices, db_index=True, verbose_name=_("action")
    )
    event_code = models.CharField(max_length=16, verbose_name=_("event code"))
    event_type_code = models.CharField(max_length=16, blank=True, verbose_name=_("event type code"))
    outcome = models.CharField(
        max_length=2, choices=Outcome.choices, default=Outcome.SUCCESS, verbose_name=_("outcome")
    )
    organization_id = models.BigIntegerField(
        null=True, blank=True, db_index=True, verbose_name=_("organization id")
    )
    target_type = models.CharField(max_length=40, blank=True, verbose_name=_("target type"))
    target_id = models.CharField(max_length=128, blank=True, verbose_name=_("target id"))
    study_uid = models.CharField(
        max_length=64, blank=True, db_index=True, verbose_name=_("study uid")
    )
    patient_id = models.CharField(max_length=64, blank=True, verbose_name=_("patient id"))
    details = models.JSONField(default=dict, blank=True, verbose_name=_("details"))
    prev_hash = models.CharField(max_length=64, verbose_name=_("prev hash"))
    hash = models.CharField(max_length=64, unique=True, verbose_name=_("hash"))
    # Which audit key made ``hash`` (audit.signing), never the key itself. Empty (NULL) only on
    # events recorded before the chain was keyed: those carry a plain SHA-256 and form one
    # chain of their own (LEGACY_CHAIN), older than every keyed event.
    key_id = models.CharField(max_length=16, null=True, blank=True, verbose_name=_("key id"))
    # The chain the event was appended to: its organization's, or one of that chain's lanes
    # (lane_of). Not hashed: an event moved to another chain breaks the links of both. Empty
    # (NULL) on events recorded before lanes, which are all in their organization's chain.
    chain = models.BigIntegerField(null=True, blank=True, editable=False, verbose_name=_("chain"))

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-id"]
        indexes = [models.Index(fields=["organization_id", "-id"], name="audit_org_recent")]

    # Not stored: how the trail's admin names the event's study to its reader (set on the
    # events of a page, audit.selectors.study_labels; None where the reader may not see it).
    study_label: str | None

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise PermissionError("Audit events are append-only.")


# Chains: one per organization (keyed by its id), one for events of no organization, and the
# frozen unkeyed chain recorded before version 0009 of the audit app.
NO_ORGANIZATION_CHAIN = 0
LEGACY_CHAIN = -1


def chain_for(organization_id: int | None) -> int:
    """The chain an event of this organization is appended to."""
    return organization_id if organization_id is not None and organization_id > 0 else 0


# An organization's chain has lanes: chains of their own, each appended to by one database
# connection at a time (audit.lanes), so that the workers' appends never queue on one head.
# Lane n of chain c is the chain c + n * LANE_SPAN; lane 0 is c itself.
LANE_SPAN = 1 << 40


def lane_chain(chain: int, lane: int) -> int:
    return chain + lane * LANE_SPAN


def lane_of(chain: int) -> tuple[int, int]:
    """The organization's chain and the lane number of ``chain`` (0 for the chain itself)."""
    if chain < LANE_SPAN:
        return chain, 0
    return chain % LANE_SPAN, chain // LANE_SPAN


def chain_of(event: "AuditEvent") -> int:
    """The chain an event was appended to: as stored, or for an event recorded before lanes,
    its organization's."""
    return event.chain if event.chain is not None else chain_for(event.organization_id)


class ChainHead(models.Model):
    """One row per chain holding its newest event's hash and its length. Locking it serializes
    the appends of one chain, so two transactions never chain onto the same predecessor, while
    other organizations' chains append in parallel. The seal (audit.signing) is an HMAC of the
    chain, count and hash: a head moved back to hide deleted events no longer verifies."""

    chain = models.BigIntegerField(primary_key=True)
    last_hash = models.CharField(max_length=64)
    count = models.PositiveBigIntegerField(default=0)
    seal = models.CharField(max_length=80, blank=True)
    # The count last published as a checkpoint (audit.checkpoints), so that an unchanged chain
    # is not written again. Only saves writes: tampering with it cannot hide a published count.
    checkpointed_count = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = _("chain head")
        verbose_name_plural = _("chain heads")

    def __str__(self) -> str:
        return f"chain {self.chain}: {self.count} events, last {self.last_hash[:12]}"
