"""The recipient's side of a guest link: the link page, its gates, the grant, the two-step email
confirmation and the SMS codes.

What a stranger holding a token learns: nothing. An unknown token, and a link that is expired,
revoked, deleted, used up or locked, all raise the same :class:`LinkUnavailable`, which the page
answers with one text and one status. Tokens that find no open link are counted against the
client address (``portal.throttle``), and an address that has sent too many of them is answered
429 with the same text. A token that finds an open link is never counted nor refused: a 256-bit
token cannot be guessed, so refusing a real one would only let anyone behind the recipient's
address (a hospital's NAT, a mobile carrier's) deny them their studies. The lookup is one
indexed query by keyed digest, so it runs for every well-formed token, throttled or not.

A GET never spends a link (mail scanners and chat previews fetch links): :func:`show_link` only
counts the visit in ``opens`` and audits it, once per address in ten minutes. :func:`open_link`
is the POST: the gates in the order of ARCHITECTURE.md (active -> email confirmation -> login
-> password -> SMS code), then ONE use, counted by a conditional UPDATE on the rules of
``state.openable`` so that N concurrent openings of a link with K uses left admit exactly K, then
the grant goes into a new session key.

Password and code guesses are throttled per link and per address before they reach the hasher.
A password guess is counted as a failure *before* it is checked, by a conditional UPDATE that
stops at the link's lock (``max_password_attempts``), and a right one is forgiven afterwards. SMS
codes are sent and checked by the one mechanism both features share (``notifications.codes``),
under the link row's lock, up to ``GUESTLINK_MAX_CODE_FAILURES``: either way concurrent guesses
never pass the limit. Every event is audited with the link's id and never with its token, a
password or a code.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import User
from audit.models import Action, Outcome
from audit.services import record
from guestlinks.access import GRANTS_SESSION_KEY, forget_memo
from guestlinks.models import ConfirmationToken, GuestLink, SmsCode, TargetKind
from guestlinks.passwords import check_link_password
from guestlinks.selectors import link_by_token_digests
from guestlinks.services.events import record_link_event
from guestlinks.services.messages import MESSAGE_CONCERNING, queue_link_message, sender_name
from guestlinks.services.state import LinkStatus, link_status, max_code_failures, openable
from guestlinks.tokens import candidate_digests, recovered_link_url
from notifications import codes
from notifications.models import Channel
from notifications.services import queue_message
from portal import decisions, throttle
from portal.clients import client_ip
from portal.digests import candidate_digests as secret_candidate_digests
from portal.digests import secret_digest
from studies.access import entries_passed_on_in_full
from studies.models import Entry, Folder, Study, Worklist
from studies.selectors import folder_and_descendants

# Tokens are 32 bytes of URL-safe base64 without padding (guestlinks.tokens and
# secrets.token_urlsafe(32)): anything else is not looked up, only counted.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
CONFIRM_PURPOSE = "guestlink-confirm"


def _setting(name: str) -> int:
    # Read at call time, so a changed setting (and the tests' settings fixture) takes effect.
    return int(getattr(settings, name))


def probe_limit() -> int:
    """Requests with tokens that open nothing, per address and window."""
    return _setting("GUESTLINK_PROBE_LIMIT")


def guess_limits() -> tuple[int, int]:
    """Password and code guesses per link, and per address, in a window."""
    return _setting("GUESTLINK_GUESSES_PER_LINK"), _setting("GUESTLINK_GUESSES_PER_ADDRESS")


def throttle_window() -> int:
    return _setting("GUESTLINK_THROTTLE_WINDOW")


def sms_code_validity() -> timedelta:
    return timedelta(minutes=_setting("GUESTLINK_SMS_CODE_MINUTES"))


def sms_resend_cooldown() -> int:
    return _setting("GUESTLINK_SMS_RESEND_SECONDS")


def max_sms_codes() -> int:
    return _setting("GUESTLINK_MAX_SMS_CODES")


# An open page is audited at most once per link and address in this many seconds: scanners,
# previews and reloads would otherwise bury the trail.
OPENED_AUDIT_SECONDS = 10 * 60


# --- Refusals ----------------------------------------------------------------------------------


class LinkError(Exception):
    """A refusal whose ``message`` is safe to show to whoever holds the link."""

    status = 400
    default_message = ""

    def __init__(self, message: str = ""):
        self.message = message or str(self.default_message)
        super().__init__(self.message)


class LinkUnavailable(LinkError):
    """Unknown, expired, revoked, deleted, used up or locked: one answer for all."""

    status = 404

    def __init__(self, message: str = ""):
        super().__init__(message or unavailable_message())


class LinkThrottled(LinkUnavailable):
    """Too many tokens that open nothing from this address. Same text, status 429."""

    status = 429


class ConfirmationPending(LinkError):
    """The link waits for its recipient to confirm their email address."""

    status = 403


class LoginRequired(LinkError):
    """The link is for a logged-in user; the view sends the visitor to the login page."""

    status = 403


class WrongAccount(LinkError):
    """The link names an email address that is not the logged-in account's."""

    status = 403


class GateFailed(LinkError):
    """A missing or wrong password or code. ``field`` names the form field to mark."""

    status = 403

    def __init__(self, message: str, *, field: str | None = None, locked: bool = False):
        super().__init__(message)
        self.field = field
        self.locked = locked


class TooManyGuesses(LinkError):
    """Guesses refused before the check; ``retry_after`` in seconds."""

    status = 429

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            ngettext(
                "Too many attempts for this link or from your network. "
                "Try again in %(minutes)d minute.",
                "Too many attempts for this link or from your network. "
                "Try again in %(minutes)d minutes.",
                minutes,
            )
            % {"minutes": minutes}
        )


class CodeNotSent(LinkError):
    """A code request that is refused (too soon after the last one, or too many codes)."""

    status = 429

    def __init__(self, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def unavailable_message() -> str:
    return _(
        "This link is not valid. It may have expired, been used up or been withdrawn. "
        "Ask the sender for a new link."
    )


# --- Throttles (portal.throttle) ----------------------------------------------------------------


def _address(request: HttpRequest | None) -> str:
    return client_ip(request) or "unknown"


def _count_probe(request: HttpRequest) -> None:
    """Count a token that opened nothing (unknown, or a link that no longer opens) against the
    address; LinkThrottled, with the same text as any dead link, once the address has used its
    allowance. Never called for a link that opens (see the module's docstring)."""
    key = f"guestlink-probe:{_address(request)}"
    window = throttle_window()
    if throttle.reserve({key: probe_limit()}, window=window) is None:
        return
    if cache.add(f"{key}:alerted", True, timeout=window):
        with transaction.atomic(durable=True):
            record(
                action=Action.LINK_REFUSED,
                request=request,
                outcome=Outcome.MINOR_FAILURE,
                target_type="guest_link",
                details={"reason": "too_many_unknown_links", "limit": probe_limit()},
            )
    raise LinkThrottled()


def _reserve_guess(link: GuestLink, request: HttpRequest) -> list[str]:
    """Count a password or code guess against the link and the address before it is checked;
    TooManyGuesses when either allowance is used up. Returns the keys (handed back on success:
    a right answer is not a guess that should count)."""
    per_link, per_address = guess_limits()
    window = throttle_window()
    limits = {
        f"guestlink-guesses:link:{link.pk}": per_link,
        f"guestlink-guesses:address:{_address(request)}": per_address,
    }
    until = throttle.reserve(limits, window=window)
    if until is None:
        return list(limits)
    if cache.add(f"guestlink-guesses-alerted:{link.pk}:{_address(request)}", True, window):
        _audit(link, Action.LINK_REFUSED, request, failed=True, reason="too_many_guesses")
    raise TooManyGuesses(throttle.seconds_until(until))


# --- Audit -------------------------------------------------------------------------------------


def _audit(
    link: GuestLink,
    action: str,
    request: HttpRequest | None,
    *,
    failed: bool = False,
    actor: User | None = None,
    **details: Any,
) -> None:
    """One event of the recipient's side; its details name the link too."""
    record_link_event(
        action,
        link=link,
        actor=actor,
        request=request,
        failed=failed,
        details={"link": link.pk, **details},
    )


def _refuse(link: GuestLink, request: HttpRequest, status: LinkStatus, *, once: bool) -> None:
    """Audit a refusal of a link that no longer opens and raise the one answer for all.
    ``once``: at most one event per link and address per window (for GETs, which anyone's
    scanner may repeat)."""
    key = f"guestlink-refused:{link.pk}:{_address(request)}"
    if not once or cache.add(key, True, timeout=OPENED_AUDIT_SECONDS):
        with transaction.atomic(durable=True):
            _audit(link, Action.LINK_REFUSED, request, failed=True, reason=status.state)
    raise LinkUnavailable()


# --- Finding a link ----------------------------------------------------------------------------


def find_link(*, token: str, request: HttpRequest) -> GuestLink:
    """The link this token names, whatever its state (the caller refuses a closed one), or
    LinkUnavailable / LinkThrottled. The lookup is by keyed digest: no comparison of tokens,
    so its time says nothing about how close a guess was. Only tokens that open nothing count
    against the address; a link that opens is found whatever the address did before."""
    link = None
    if _TOKEN_SHAPE.fullmatch(token or ""):
        link = link_by_token_digests(candidate_digests(token))
    if link is None or not link_status(link).is_open:
        _count_probe(request)
    if link is None:
        raise LinkUnavailable()
    return link


# --- The link page (GET) -----------------------------------------------------------------------


@dataclass(frozen=True)
class LinkPage:
    """What the neutral link page shows: who shares, and the gates to pass. Nothing about the
    study, the patient or the sender's message: those wait until the gates are passed."""

    link: GuestLink
    organization_name: str
    confirmation_pending: bool
    needs_login: bool
    wrong_account: bool
    password_required: bool
    birth_date_password: bool
    code_required: bool
    code_active: bool
    mobile_hint: str
    attempts_left: int | None

    def shown(self) -> tuple[object, ...]:
        """Everything the page shows, which is everything of it but the link itself."""
        return tuple(
            getattr(self, each.name) for each in dataclasses.fields(self) if each.name != "link"
        )


def describe_link(link: GuestLink, request: HttpRequest) -> LinkPage:
    """The page's content for this visitor, without side effects."""
    user = request.user
    logged_in = user.is_authenticated
    wrong_account = bool(
        link.login_required
        and user.is_authenticated
        and link.email
        and not _same_email(user.email, link)
    )
    attempts_left = None
    if link.password_hash and link.max_password_attempts is not None:
        attempts_left = max(0, link.max_password_attempts - link.password_failures)
    # Fail closed: a link that asks for a code opens only with one, even if (against the
    # sender's checks) it has no number to send it to.
    code_required = link.sms_code_required
    return LinkPage(
        link=link,
        organization_name=link.organization.name,
        confirmation_pending=link.require_email_confirmation and link.confirmed_at is None,
        needs_login=link.login_required and not logged_in,
        wrong_account=wrong_account,
        password_required=bool(link.password_hash),
        birth_date_password=link.password_is_birth_date,
        code_required=code_required,
        code_active=code_required and codes.current_code(_code_policy(link, request)) is not None,
        # The last two digits only: enough for the recipient to recognize their phone.
        mobile_hint=link.mobile[-2:] if code_required and link.mobile else "",
        attempts_left=attempts_left,
    )


def show_link(*, link: GuestLink, request: HttpRequest) -> LinkPage:
    """The GET of the link page: refuse a closed link; else count the visit and audit it.
    Never spends a use.

    A visit is counted once per link and address per ten minutes, in the same transaction as
    its audit event, so the "Opened" count the sender sees and the trail's events agree, and a
    reload or a scanner's second fetch neither inflates the count nor costs a write."""
    status = link_status(link)
    if not status.is_open:
        _refuse(link, request, status, once=True)
    if cache.add(
        f"guestlink-opened:{link.pk}:{_address(request)}", True, timeout=OPENED_AUDIT_SECONDS
    ):
        with transaction.atomic(durable=True):
            GuestLink.objects.filter(pk=link.pk).update(opens=F("opens") + 1)
            _audit(link, Action.LINK_OPENED, request)
    return describe_link(link, request)


# --- The gates and the grant (POST) ------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What passing the gates gave: the link and the studies now held in the session."""

    link: GuestLink
    study_ids: list[int]

    @property
    def destination(self) -> str:
        return destination_for(self.link)


def _study_of(link: GuestLink) -> Study:
    """A study link's study."""
    if link.study is None:
        raise ValueError(f"Guest link {link.pk} is a study link without a study.")
    return link.study


def destination_for(link: GuestLink) -> str:
    """Where a grant of this link leads, without the token: the viewer for a study link, the
    guest's list of studies for a worklist or folder link -- and for a study link that carries
    a message, since the viewer shows only the messages of shares and the sender's message is
    due once the gates are passed."""
    if link.target_kind == TargetKind.STUDY and not link.message:
        return reverse("studies:study", args=[_study_of(link).study_uid])
    return reverse("guest:studies")


def _same_email(address: str, link: GuestLink) -> bool:
    return bool(address) and address.strip().casefold() == link.email.strip().casefold()


def _check_open(link: GuestLink, request: HttpRequest) -> None:
    status = link_status(link)
    if not status.is_open:
        _refuse(link, request, status, once=False)


def _check_confirmed(link: GuestLink) -> None:
    if link.require_email_confirmation and link.confirmed_at is None:
        raise ConfirmationPending(
            _(
                "Check your email: we sent a confirmation link. Open it to receive the link "
                "to the study."
            )
        )


def _check_account(link: GuestLink, request: HttpRequest) -> None:
    if not link.login_required:
        return
    user = request.user
    if not user.is_authenticated:
        raise LoginRequired(_("Log in to continue."))
    if link.email and not _same_email(user.email, link):
        with transaction.atomic(durable=True):
            _audit(link, Action.LINK_REFUSED, request, failed=True, reason="other_account")
        raise WrongAccount(
            _(
                "This link was sent to another account. Log out and log in with the account "
                "it was sent to, or ask the sender to send it to you."
            )
        )


_BIRTH_DATE = re.compile(r"(\d{4})[-./ ]?(\d{2})[-./ ]?(\d{2})")


def _as_birth_date(text: str) -> str:
    """YYYYMMDD from what a recipient types for a birth date ("1970-01-31", "1970 01 31"); only
    year-first spellings, so that no day and month are ever swapped."""
    found = _BIRTH_DATE.fullmatch(text.strip())
    return "".join(found.groups()) if found else text


def _reserve_failure(link: GuestLink, request: HttpRequest, counter: str, keys: list[str]) -> None:
    """Count a guess as a failure BEFORE checking it, and only while the link still opens.

    Counting afterwards would let concurrent guesses all reach the check once the limit is
    near: with a lock at three, ten guesses arriving together would all be checked, and a right
    one among them would show itself (different answer) though the link locked meanwhile -- for
    a birth-date password, that is the patient's date of birth. Counted first by a conditional
    UPDATE, no more guesses than the limit are ever checked. A right answer is forgiven
    afterwards (:func:`_forgive_failure`); for those few milliseconds the link may look locked
    to a concurrent request, which then fails closed."""
    now = timezone.now()
    reserved = GuestLink.objects.filter(openable(now=now), pk=link.pk).update(
        **{counter: F(counter) + 1}
    )
    # A guess may lock the link, which ends the sessions it opened.
    decisions.changed()
    if not reserved:
        throttle.hand_back(*keys)
        link.refresh_from_db()
        _refuse(link, request, link_status(link, now=now), once=False)


def _forgive_failure(link: GuestLink, counter: str, keys: list[str]) -> None:
    GuestLink.objects.filter(pk=link.pk).update(**{counter: F(counter) - 1})
    throttle.hand_back(*keys)


def _check_password(link: GuestLink, request: HttpRequest, password: str) -> None:
    if not password:
        missing = (
            _("Enter the date of birth.")
            if link.password_is_birth_date
            else _("Enter the password.")
        )
        raise GateFailed(missing, field="password")
    if link.password_is_birth_date:
        password = _as_birth_date(password)
    keys = _reserve_guess(link, request)
    _reserve_failure(link, request, "password_failures", keys)
    if check_link_password(password, link.password_hash):
        _forgive_failure(link, "password_failures", keys)
        return
    with transaction.atomic(durable=True):
        link.refresh_from_db(fields=["password_failures"])
        limit = link.max_password_attempts
        locked = limit is not None and link.password_failures >= limit
        _audit(
            link,
            Action.LINK_WRONG_PASSWORD,
            request,
            failed=True,
            failures=link.password_failures,
            locked=locked,
        )
    if locked:
        raise GateFailed(
            _(
                "Wrong password. The maximum number of attempts is reached and the link no "
                "longer opens. Ask the sender for a new link."
            ),
            field="password",
            locked=True,
        )
    if limit is not None:
        left = limit - link.password_failures
        raise GateFailed(
            ngettext(
                "Wrong password. %(left)d attempt left before the link locks.",
                "Wrong password. %(left)d attempts left before the link locks.",
                left,
            )
            % {"left": left},
            field="password",
        )
    raise GateFailed(_("Wrong password. Check it and try again."), field="password")


def _code_policy(link: GuestLink, request: HttpRequest | None) -> codes.CodePolicy[GuestLink]:
    """A link's SMS codes: bound to the link, checked under its row's lock. A link that no
    longer opens takes no code, and reaching the limit needs nothing more than the count:
    ``state.link_status`` calls the link locked from ``code_failures`` alone. A right code
    leaves the count as it is (a new link is the way out, not a lucky guess)."""
    return codes.CodePolicy(
        holder=GuestLink.objects.filter(pk=link.pk),
        code_model=SmsCode,
        owner={"link": link},
        purpose=f"guestlink-sms:{link.pk}",
        max_failures=max_code_failures(),
        # The holder rows are this link's (``holder``).
        closed=lambda row: not link_status(row).is_open,
        audit=lambda row, action, **details: _audit(row, action, request, **details),
        sent_action=Action.LINK_CODE_SENT,
        wrong_action=Action.LINK_WRONG_CODE,
        limit_detail="locked",
    )


def _check_code(link: GuestLink, request: HttpRequest, code: str) -> None:
    """Pass the code gate: the right code is spent (single use) under the link's lock."""
    if not code:
        raise GateFailed(
            _("Enter the code we sent you by SMS. No code yet? Select Send code."), field="code"
        )
    policy = _code_policy(link, request)
    used_or_expired = GateFailed(
        _("This code has expired or was already used. Select Send code for a new one."),
        field="code",
    )
    if codes.current_code(policy) is None:
        # Nothing to guess against: not a failure, nor a guess for the throttle.
        raise used_or_expired
    keys = _reserve_guess(link, request)
    check = codes.verify(policy, code)
    if check.outcome != codes.Outcome.WRONG:
        # A right code, or no guess at all: not counted against the link or the address.
        throttle.hand_back(*keys)
    if check.outcome == codes.Outcome.VERIFIED:
        return
    if check.outcome == codes.Outcome.CLOSED:
        # The locked holder row: the link (_code_policy).
        holder = check.holder
        _refuse(holder, request, link_status(holder), once=False)
    if check.outcome == codes.Outcome.NO_CODE:
        raise used_or_expired
    if check.reached_limit:
        raise GateFailed(
            _(
                "Wrong code. Too many wrong codes were entered and the link no longer opens. "
                "Ask the sender for a new link."
            ),
            field="code",
            locked=True,
        )
    # As the share's code page and the link's password do: how many wrong codes are still
    # allowed before the link locks.
    left = check.attempts_left
    raise GateFailed(
        ngettext(
            "Wrong code. Check the newest SMS we sent and try again: %(left)d attempt left "
            "before the link locks.",
            "Wrong code. Check the newest SMS we sent and try again: %(left)d attempts left "
            "before the link locks.",
            left,
        )
        % {"left": left},
        field="code",
    )


def granted_studies(link: GuestLink, *, now: datetime | None = None) -> list[int]:
    """The studies a grant of ``link`` holds, as they are now (the grant keeps this list).

    A study link: the study, and with ``include_priors`` the patient's other studies that have
    an active entry in a worklist holding the linked study. A worklist or folder link: the
    studies of its active entries (a folder's subfolders included). Entries of shares that may
    not be passed on whole (anonymized, images only, SMS code, no further sharing) never count:
    a link must not widen a share."""
    now = now or timezone.now()
    entries = entries_passed_on_in_full(now)
    if link.target_kind == TargetKind.STUDY:
        study_id = link.study_id
        if study_id is None:
            raise ValueError(f"Guest link {link.pk} is a study link without a study.")
        ids = [study_id]
        if link.include_priors:
            holding = entries.filter(study_id=study_id).values("worklist_id")
            priors = (
                Study.objects.filter(patient_id=_study_of(link).patient_id)
                .exclude(pk=study_id)
                .filter(Exists(entries.filter(study=OuterRef("pk"), worklist_id__in=holding)))
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            ids.extend(priors)
        return ids
    if link.target_kind == TargetKind.WORKLIST:
        held = _collection_entries(worklist_id=link.worklist_id, folder=None, now=now)
    else:
        held = _collection_entries(worklist_id=None, folder=link.folder, now=now)
    return sorted(set(held.values_list("study_id", flat=True)))


def _collection_entries(
    *, worklist_id: int | None, folder: Folder | None, now: datetime
) -> QuerySet[Entry]:
    """The active entries a worklist's or folder's grant takes its studies from (a folder's
    subfolders included), without those of shares that may not be passed on whole."""
    entries = entries_passed_on_in_full(now)
    if folder is not None:
        return entries.filter(folder_id__in=folder_and_descendants(folder))
    if worklist_id is None:
        return entries.none()
    return entries.filter(worklist_id=worklist_id)


@dataclass(frozen=True)
class LinkReach:
    """What a worklist's or folder's link would open if it were opened now."""

    studies: int
    patients: int


def link_reach(
    *, worklist: Worklist | None = None, folder: Folder | None = None, now: datetime | None = None
) -> LinkReach:
    """How many studies, of how many patients, a grant of a link to this worklist or folder
    would hold now: the same studies :func:`granted_studies` puts into the guest's session, so
    that the Send Link dialog can say what the sender hands over before Get Link. (A grant takes
    the studies as they are when the link is opened: entries filed before then count too.)"""
    if (worklist is None) == (folder is None):
        raise ValueError("A link's reach is counted for one worklist or one folder.")
    held = _collection_entries(
        worklist_id=worklist.pk if worklist is not None else None,
        folder=folder,
        now=now or timezone.now(),
    )
    studies = Study.objects.filter(pk__in=held.values("study_id"))
    return LinkReach(
        studies=studies.count(),
        patients=studies.values("patient_id").distinct().count(),
    )


def _store_grant(
    request: HttpRequest, link: GuestLink, study_ids: list[int], now: datetime
) -> None:
    """Into a new session key (the old one may have been seen before the gates were passed), as
    Django's login does; a grant of the same link made earlier is replaced. A first visit has no
    key to replace: its session is written once, with the grant."""
    grants = [
        grant
        for grant in request.session.get(GRANTS_SESSION_KEY) or []
        if isinstance(grant, dict) and grant.get("link") != link.pk
    ]
    if request.session.session_key:
        request.session.cycle_key()
    # A visitor without a session yet gets one key, made once when the response is sent.
    grants.append({"link": link.pk, "studies": study_ids, "at": now.isoformat()})
    request.session[GRANTS_SESSION_KEY] = grants
    forget_memo(request)


def check_entry_gates(*, link: GuestLink, request: HttpRequest) -> None:
    """The gates that ask nothing of the visitor: open, confirmed, logged in as the right
    account. Raises the first refusal."""
    _check_open(link, request)
    _check_confirmed(link)
    _check_account(link, request)


def open_link(
    *, link: GuestLink, request: HttpRequest, password: str = "", code: str = ""
) -> Grant:
    """Pass the gates and count one use; the grant goes into the session. Raises a LinkError
    subclass at the first gate that refuses."""
    check_entry_gates(link=link, request=request)
    if link.password_hash:
        _check_password(link, request, password)
    if link.sms_code_required:
        _check_code(link, request, code)
    now = timezone.now()
    study_ids: list[int] = []
    with transaction.atomic(durable=True):
        counted = GuestLink.objects.filter(openable(now=now), pk=link.pk).update(uses=F("uses") + 1)
        decisions.changed()
        if counted:
            study_ids = granted_studies(link, now=now)
            _audit(
                link,
                Action.LINK_USED,
                request,
                target_kind=link.target_kind,
                studies=len(study_ids),
            )
    if not counted:
        # It closed between the first gate and now (the last use went to someone else, or it
        # was revoked meanwhile).
        link.refresh_from_db()
        _refuse(link, request, link_status(link, now=now), once=False)
    # The grant's link keeps the counters it was read with: nothing after the gates reads them,
    # and reading them again would cost the open another round trip.
    _store_grant(request, link, study_ids, now)
    return Grant(link=link, study_ids=study_ids)


# --- SMS codes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentCode:
    expires_at: datetime
    mobile_hint: str


def send_code(*, link: GuestLink, request: HttpRequest) -> SentCode:
    """Text a new code for this link (the "Send code" button), replacing any earlier one.

    The link must be open, confirmed, and the visitor logged in with the right account if the
    link asks for it: a code is a gate after those. Refused within the cooldown after the last
    code, and once the link's codes are used up. A new code never resets the failure count."""
    check_entry_gates(link=link, request=request)
    if not link.sms_code_required:
        raise LinkError(_("This link does not use SMS codes."))
    if not link.mobile:
        raise CodeNotSent(
            _("No mobile number was given for this link. Ask the sender for a new link.")
        )
    validity = sms_code_validity()
    try:
        issued = codes.issue(
            _code_policy(link, request),
            to=link.mobile,
            language=link.language,
            concerning=(MESSAGE_CONCERNING, link.pk),
            validity=validity,
            resend_seconds=sms_resend_cooldown(),
            cap=max_sms_codes(),
        )
    except codes.HolderClosed as refusal:
        # It closed after the first gate. The locked holder row: the link (_code_policy).
        holder = cast(GuestLink, refusal.holder)
        _refuse(holder, request, link_status(holder), once=False)
    except codes.TooSoon as refusal:
        raise CodeNotSent(refusal.message, retry_after=refusal.wait) from None
    except codes.CapReached:
        raise CodeNotSent(
            _("No more codes can be sent for this link. Contact the sender of the link for help.")
        ) from None
    return SentCode(expires_at=issued.expires_at, mobile_hint=link.mobile[-2:])


# --- Two-step email confirmation ---------------------------------------------------------------


def start_confirmation(link: GuestLink, *, request: HttpRequest | None = None) -> str:
    """The first of the two emails: ask ``link.email`` to confirm it is the intended recipient.
    Stores only the keyed digest of a new confirmation token, queues the ``email_confirmation``
    message in the caller's transaction and returns the confirmation address."""
    if not link.email:
        raise ValueError("A link confirmed by email needs an email address.")
    token = secrets.token_urlsafe(32)
    url = f"{settings.SITE_URL}{reverse('guest:confirm', args=[token])}"
    actor = None
    if request is None or not request.user.is_authenticated:
        actor = link.created_by
    with transaction.atomic():
        ConfirmationToken.objects.create(
            link=link, digest=secret_digest(token, purpose=CONFIRM_PURPOSE)
        )
        queue_message(
            channel=Channel.EMAIL,
            to=link.email,
            template="email_confirmation",
            context={"sender_name": sender_name(link), "link": url, "expires_at": link.expires_at},
            language=link.language,
            concerning=(MESSAGE_CONCERNING, link.pk),
        )
        _audit(
            link,
            Action.LINK_EMAILED,
            request,
            actor=actor,
            channel="email",
            step="confirmation",
            language=link.language,
        )
    return url


def find_confirmation(*, token: str, request: HttpRequest) -> ConfirmationToken:
    """The confirmation this token names, if its link still opens; else LinkUnavailable (or
    LinkThrottled), exactly as for link tokens."""
    confirmation = None
    if _TOKEN_SHAPE.fullmatch(token or ""):
        confirmation = (
            ConfirmationToken.objects.select_related(
                "link__organization", "link__created_by", "link__study__patient"
            )
            .filter(digest__in=secret_candidate_digests(token, purpose=CONFIRM_PURPOSE))
            .first()
        )
    if confirmation is None:
        _count_probe(request)
        raise LinkUnavailable()
    status = link_status(confirmation.link)
    if not status.is_open:
        _count_probe(request)
        _refuse(confirmation.link, request, status, once=True)
    return confirmation


def confirm_email(*, confirmation: ConfirmationToken, request: HttpRequest) -> bool:
    """The POST of the confirmation page: mark the token used and the link confirmed (once), and
    queue the second email, with the link itself. Returns False if the link was already
    confirmed (nothing is sent again)."""
    link = confirmation.link
    _check_open(link, request)
    now = timezone.now()
    with transaction.atomic(durable=True):
        spent = ConfirmationToken.objects.filter(pk=confirmation.pk, used_at__isnull=True).update(
            used_at=now
        )
        confirmed = spent and GuestLink.objects.filter(
            pk=link.pk, confirmed_at__isnull=True
        ).update(confirmed_at=now)
        if not confirmed:
            return False
        url = recovered_link_url(link)
        if url is None:
            # The key that made this link has been retired: it cannot be sent again (raising
            # here rolls the confirmation back).
            raise LinkUnavailable()
        link.confirmed_at = now
        queue_link_message(link, channel=Channel.EMAIL, to=link.email, url=url)
        _audit(link, Action.LINK_CONFIRMED, request, confirmation=confirmation.pk)
        _audit(
            link,
            Action.LINK_EMAILED,
            request,
            channel="email",
            step="link",
            language=link.language,
        )
    return True


def masked_email(address: str) -> str:
    """``j•••@example.org``: enough for the recipient to recognize their address."""
    local, _sep, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"
