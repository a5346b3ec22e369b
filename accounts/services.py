"""Authentication use cases: logging in (with or without a second step), logging out, changing
the password, managing the two-factor device, issuing and ending API tokens, and registering an
account.

Every guess at a secret (password at login, at password change or two-factor removal, a one-time
code, the credentials behind an API token) is counted by ``accounts.lockout`` before it is
checked: per account and client address pair, per address, and per account from everywhere,
where the last one slows attempts down with a growing delay instead of locking the account, and
spares addresses the account signed in from and logins that give a valid one-time code.

Who must use two-factor authentication is ``accounts.policy``'s answer; a token is issued to
such a user only with a valid code, and enrolling, changing or removing a device, like changing
the password, ends every API token of the user.

Each function writes its audit events in the same transaction as the change it makes. Domain
errors carry a message that is safe to show to the person who tried.
"""

import math
import time
from base64 import b32encode
from binascii import unhexlify
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import django_otp
from django.contrib.auth import authenticate, password_validation, update_session_auth_hash
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.formats import time_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_otp import DEVICE_ID_SESSION_KEY, devices_for_user
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from accounts import lockout
from accounts.authentication import TOKEN_PURPOSE
from accounts.http import AuthenticatedRequest
from accounts.middleware import LAST_SEEN_KEY, SESSION_STARTED_KEY
from accounts.models import ApiToken, Organization, User
from accounts.policy import has_two_factor, two_factor_required
from audit.models import Action, Outcome
from audit.services import record
from notifications.languages import supported_language
from portal.clients import client_ip
from portal.digests import secret_digest
from portal.phones import normalize_mobile

# Between the password and the code, the session names the user without logging them in. The
# code must follow within a few minutes, or the password is asked again.
PENDING_LOGIN_KEY = "accounts_pending_login"
PENDING_LOGIN_SECONDS = 5 * 60
# The secret of a device being set up lives in the session until a code proves the app has it,
# so abandoned set-ups leave no half-made device in the database.
ENROLMENT_KEY = "accounts_totp_enrolment"
TOTP_DEVICE_NAME = "Authenticator app"
UNKNOWN_USER_LABEL = "unknown user"


class AuthenticationRefused(Exception):
    """A refused login, code or password check. ``message`` is safe to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidCredentials(AuthenticationRefused):
    pass


class InvalidCode(AuthenticationRefused):
    pass


class TwoFactorRequired(AuthenticationRefused):
    """The account has a device: the code must come with the request."""


class TwoFactorSetupRequired(AuthenticationRefused):
    """The account must use two-factor authentication and has no device yet."""


class PendingLoginExpired(AuthenticationRefused):
    pass


class Throttled(AuthenticationRefused):
    """Too many failures; ``retry_at`` says until when. ``account_wide``: the account's ceiling
    (failures from everywhere) refused, which a known address or a one-time code would pass."""

    def __init__(self, retry_at: datetime, *, account_wide: bool = False):
        self.retry_at = retry_at
        self.account_wide = account_wide
        minutes = math.ceil(self.retry_after / 60)
        values = {"minutes": minutes, "time": time_format(timezone.localtime(retry_at), "H:i")}
        if account_wide:
            message = ngettext(
                "Many failed attempts were made at this account from elsewhere, so attempts are "
                "slowed down. Try again in %(minutes)d minute (after %(time)s), log in from a "
                "computer you have used with this account before, or give your password "
                "together with the current code from your authenticator app.",
                "Many failed attempts were made at this account from elsewhere, so attempts are "
                "slowed down. Try again in %(minutes)d minutes (after %(time)s), log in from a "
                "computer you have used with this account before, or give your password "
                "together with the current code from your authenticator app.",
                minutes,
            )
        else:
            message = ngettext(
                "Too many failed attempts for this account or from this network. "
                "Try again in %(minutes)d minute (after %(time)s).",
                "Too many failed attempts for this account or from this network. "
                "Try again in %(minutes)d minutes (after %(time)s).",
                minutes,
            )
        super().__init__(message % values)

    @property
    def retry_after(self) -> int:
        """Whole seconds until attempts are accepted again (for a Retry-After header)."""
        return max(1, math.ceil((self.retry_at - timezone.now()).total_seconds()))


# One answer for every failure of a login that gives password and code together past the
# account's ceiling: which of the two was wrong must not show, or the code field would be a way
# around the ceiling for password guesses.
_WRONG_PASSWORD_OR_CODE = _("Wrong username, password or code.")


# --- The throttle (accounts.lockout) ------------------------------------------------------------


def reserve_attempt(*, username: str, ip: str | None) -> datetime | None:
    """Count an attempt at ``username`` from ``ip`` before the secret is checked. None if it may
    go ahead, or until when attempts are refused. An attempt that turns out not to be a failure
    is handed back with ``release_attempt``."""
    reservation = lockout.reserve(username=username, ip=ip)
    if reservation.retry_at is not None:
        reservation.release()
    return reservation.retry_at


def release_attempt(*, username: str, ip: str | None) -> None:
    """Hand back an attempt that was not a failed guess (right password or code)."""
    keys = lockout.throttle_keys(username=username, ip=ip)
    if lockout.is_known_address(username=username, ip=ip):
        keys = keys[:2]  # the account's ceiling does not count known addresses
    lockout.Reservation(keys=tuple(keys)).release()


def _reserve_or_refuse(
    *,
    request: HttpRequest,
    username: str,
    step: str,
    user: User | None = None,
    ceiling: bool = True,
    with_code: bool = False,
) -> lockout.Reservation:
    """Count the attempt, or refuse it (audited) with Throttled. ``with_code``: the request
    brings a one-time code, which lets it past the account's ceiling (never past the pair's or
    the address's limit); the reservation then says ``account_wide``."""
    reservation = lockout.reserve(username=username, ip=client_ip(request), ceiling=ceiling)
    if reservation.retry_at is None or (reservation.account_wide and with_code):
        return reservation
    reservation.release()
    if user is None:
        user = _known_user(username)
    with transaction.atomic(durable=True):
        record(
            action=Action.LOGIN_THROTTLED,
            actor=user,
            actor_label=None if user is not None else UNKNOWN_USER_LABEL,
            request=request,
            outcome=Outcome.MINOR_FAILURE,
            details={
                "username": username[:150],
                "step": step,
                "until": reservation.retry_at.isoformat(),
                "limit": "account" if reservation.account_wide else "account and address",
            },
        )
    raise Throttled(reservation.retry_at, account_wide=reservation.account_wide)


def _known_user(username: str) -> User | None:
    # Only to name the actor in the audit trail; runs for known and unknown names alike.
    return User._default_manager.filter(username=username).first()


def _record_failed_password(*, request: HttpRequest, username: str, step: str) -> None:
    actor = _known_user(username)
    with transaction.atomic(durable=True):
        record(
            action=Action.LOGIN_FAILED,
            actor=actor,
            actor_label=None if actor is not None else UNKNOWN_USER_LABEL,
            request=request,
            outcome=Outcome.MINOR_FAILURE,
            details={"username": username[:150], "step": step},
        )


# --- Logging in -----------------------------------------------------------------------------


def _check_password(
    *, request: HttpRequest, username: str, password: str, reservation: lockout.Reservation
) -> User:
    """The user these credentials belong to, or InvalidCredentials. Unknown usernames take the
    same path as wrong passwords: Django's ModelBackend runs the hasher for them too, so the
    answer time does not tell which usernames exist."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        # The reserved attempt stays counted: it was a failure.
        _record_failed_password(request=request, username=username, step="password")
        raise InvalidCredentials(_("Wrong username or password."))
    reservation.release()
    return user


def _check_password_and_code(
    *,
    request: HttpRequest,
    username: str,
    password: str,
    token: str,
    reservation: lockout.Reservation,
) -> tuple[User, TOTPDevice]:
    """Both secrets at once, for an attempt past the account's ceiling: one answer for every
    failure. The password comes first, so a device's own delay grows only for someone who knows
    the password, never for a stranger sending codes."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        _record_failed_password(request=request, username=username, step="password and code")
        raise InvalidCredentials(_WRONG_PASSWORD_OR_CODE)
    for device in TOTPDevice.objects.devices_for_user(user, confirmed=True):
        # None when the code is wrong or the device still makes its user wait.
        verified = django_otp.verify_token(user, device.persistent_id, token)
        if verified is not None:
            reservation.release()
            return user, verified
    with transaction.atomic(durable=True):
        # The right password with a wrong code: the trail tells the security officer.
        record(
            action=Action.TWO_FACTOR_FAILED,
            actor=user,
            request=request,
            outcome=Outcome.MINOR_FAILURE,
            details={"username": user.get_username(), "step": "password and code"},
        )
    raise InvalidCredentials(_WRONG_PASSWORD_OR_CODE)


def check_two_factor_code(*, request: HttpRequest, user: User, token: str) -> TOTPDevice:
    """The user's device that accepts this code, or a refusal. Wrong codes count against the
    pair's and the address's limits, and django-otp adds its own growing delay per device (which
    is why the account's ceiling is left out: only someone with the password gets here)."""
    username = user.get_username()
    reservation = _reserve_or_refuse(
        request=request, username=username, user=user, step="two-factor", ceiling=False
    )
    devices = list(TOTPDevice.objects.devices_for_user(user, confirmed=True))
    if not devices:
        reservation.release()
        raise InvalidCode(_("This account has no two-factor device."))
    for device in devices:
        allowed, info = device.verify_is_allowed()
        if not allowed:
            # Refused by the device before the code was looked at: not a guess.
            reservation.release()
            locked_until = (info or {}).get("locked_until")
            wait = (
                max(1, int((locked_until - timezone.now()).total_seconds()) + 1)
                if locked_until
                else 1
            )
            raise InvalidCode(
                ngettext(
                    "Wait %(seconds)d second before entering another code.",
                    "Wait %(seconds)d seconds before entering another code.",
                    wait,
                )
                % {"seconds": wait}
            )
        verified = django_otp.verify_token(user, device.persistent_id, token)
        if verified is not None:
            reservation.release()
            return verified
    with transaction.atomic(durable=True):
        record(
            action=Action.TWO_FACTOR_FAILED,
            actor=user,
            request=request,
            outcome=Outcome.MINOR_FAILURE,
            details={"username": username},
        )
    raise InvalidCode(
        _("That code is not right. Enter the current code from your authenticator app.")
    )


def _signed_in(*, request: HttpRequest, user: User) -> None:
    """What every successful sign-in does to the lockout: this address's failures for the
    account are forgotten, and the address becomes one the account is known to use."""
    ip = client_ip(request)
    lockout.clear_failures(username=user.get_username(), ip=ip)
    lockout.remember_address(user=user, ip=ip)


def complete_login(
    *, request: HttpRequest, user: User, device: TOTPDevice | None = None, backend: str | None
) -> None:
    """Log the user in: a new session key (so a key planted before login is worthless), the
    device that verified them, and the LOGIN event."""
    with transaction.atomic(durable=True):
        auth_login(request, user, backend=backend)
        if device is not None:
            django_otp.login(request, device)
        # Both session clocks (accounts.middleware) start at the login itself, not at the
        # first request after the redirect.
        now = int(time.time())
        request.session[SESSION_STARTED_KEY] = now
        request.session[LAST_SEEN_KEY] = now
        _signed_in(request=request, user=user)
        record(
            action=Action.LOGIN,
            actor=user,
            request=request,
            details={"two_factor": device is not None},
        )


def log_in_with_password(
    *, request: HttpRequest, username: str, password: str, next_url: str, otp_token: str = ""
) -> bool:
    """First (or only) login step. True when the user is logged in; False when the account
    uses two-factor and the session now waits for the code (see ``log_in_with_code``).

    ``otp_token``, a code given with the password, logs an account with a device in at once,
    and is the way past the account's ceiling (many failures from elsewhere)."""
    reservation = _reserve_or_refuse(
        request=request, username=username, step="password", with_code=bool(otp_token)
    )
    if reservation.account_wide:
        user, device = _check_password_and_code(
            request=request,
            username=username,
            password=password,
            token=otp_token,
            reservation=reservation,
        )
        complete_login(request=request, user=user, device=device, backend=user.backend)
        return True
    user = _check_password(
        request=request, username=username, password=password, reservation=reservation
    )
    if not has_two_factor(user):
        complete_login(request=request, user=user, backend=user.backend)
        return True
    if otp_token:
        device = check_two_factor_code(request=request, user=user, token=otp_token)
        complete_login(request=request, user=user, device=device, backend=user.backend)
        return True
    # A fresh key before the session starts naming a user, as login() does after the code.
    request.session.cycle_key()
    request.session[PENDING_LOGIN_KEY] = {
        "user_id": user.pk,
        "backend": user.backend,
        # Binds the pending step to the password just checked: changing it voids the step.
        "auth_hash": user.get_session_auth_hash(),
        "started": int(time.time()),
        "next": next_url,
    }
    return False


def pending_login_user(request: HttpRequest) -> User | None:
    """The user waiting for the second login step in this session, if it has not expired."""
    pending = request.session.get(PENDING_LOGIN_KEY)
    if not pending:
        return None
    if time.time() - pending.get("started", 0) > PENDING_LOGIN_SECONDS:
        del request.session[PENDING_LOGIN_KEY]
        return None
    user = User._default_manager.filter(pk=pending.get("user_id"), is_active=True).first()
    if user is None or not constant_time_compare(
        pending.get("auth_hash", ""), user.get_session_auth_hash()
    ):
        del request.session[PENDING_LOGIN_KEY]
        return None
    return user


def log_in_with_code(*, request: HttpRequest, token: str) -> str:
    """Second login step: check the code for the pending user and log them in. Returns where
    the first step asked to go next."""
    user = pending_login_user(request)
    if user is None:
        raise PendingLoginExpired(
            _("Your login took too long. Enter your username and password again.")
        )
    device = check_two_factor_code(request=request, user=user, token=token)
    pending = request.session.pop(PENDING_LOGIN_KEY)
    complete_login(request=request, user=user, device=device, backend=pending["backend"])
    next_url: str = pending["next"]
    return next_url


def verify_session(*, request: HttpRequest, user: User, token: str) -> None:
    """Raise the session of ``user``, already logged in, to two-factor verified (asked of a
    session that began before the device was set up, by the administration and
    ``TwoFactorMiddleware``)."""
    device = check_two_factor_code(request=request, user=user, token=token)
    with transaction.atomic(durable=True):
        # The session gains privileges: give it a key nobody saw before.
        request.session.cycle_key()
        django_otp.login(request, device)
        _signed_in(request=request, user=user)
        record(
            action=Action.LOGIN,
            actor=user,
            request=request,
            details={"two_factor": True, "step": "session verification"},
        )


def log_out(*, request: HttpRequest) -> None:
    with transaction.atomic(durable=True):
        if request.user.is_authenticated:
            record(action=Action.LOGOUT, request=request)
        auth_logout(request)


# --- Password -------------------------------------------------------------------------------


def _check_current_password(*, request: HttpRequest, user: User, password: str, step: str):
    username = user.get_username()
    reservation = _reserve_or_refuse(request=request, username=username, user=user, step=step)
    if user.check_password(password):
        reservation.release()
        return
    with transaction.atomic(durable=True):
        record(
            action=Action.LOGIN_FAILED,
            actor=user,
            request=request,
            outcome=Outcome.MINOR_FAILURE,
            details={"username": username, "step": step},
        )
    raise InvalidCredentials(_("Your current password is not right."))


def change_password(
    *, request: HttpRequest, user: User, old_password: str, new_password: str
) -> None:
    """Set a new password after checking the current one. This session stays logged in; every
    other session of the user ends, because their stored password hash no longer matches, and
    so does every API token: whoever learnt the old password may have taken one."""
    _check_current_password(
        request=request, user=user, password=old_password, step="password change"
    )
    with transaction.atomic(durable=True):
        user.set_password(new_password)
        user.save(update_fields=["password"])
        update_session_auth_hash(request, user)
        record(action=Action.PASSWORD_CHANGED, actor=user, request=request)
        end_api_tokens(request=request, user=user, reason="password changed")


# --- Two-factor device ----------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    """A device being set up: shown as a QR code and as text, not saved yet."""

    device: TOTPDevice

    @property
    def config_url(self) -> str:
        url: str = self.device.config_url
        return url

    @property
    def secret(self) -> str:
        # Base32 in groups of four, as authenticator apps accept it typed by hand.
        text = b32encode(self.device.bin_key).decode()
        return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def start_enrolment(*, request: AuthenticatedRequest) -> Enrolment:
    """The device the user is setting up in this session (the same one on every reload, so a
    QR code already scanned stays valid until confirmed)."""
    key = request.session.get(ENROLMENT_KEY)
    if not key:
        key = random_hex(20)
        request.session[ENROLMENT_KEY] = key
    return Enrolment(TOTPDevice(user=request.user, name=TOTP_DEVICE_NAME, key=key))


def confirm_enrolment(*, request: AuthenticatedRequest, token: str) -> TOTPDevice:
    """Save the device being set up once the app shows it holds the secret, and count this
    session as verified by it."""
    user = request.user
    key = request.session.get(ENROLMENT_KEY)
    if not key:
        raise InvalidCode(_("Start the set-up again: scan the new QR code, then enter its code."))
    if has_two_factor(user):
        raise AuthenticationRefused(_("Two-factor authentication is already on."))
    totp = TOTP(unhexlify(key.encode()), step=30, t0=0, digits=6, drift=0)
    totp.time = time.time()
    if not token.isdigit() or not totp.verify(int(token), tolerance=1):
        raise InvalidCode(
            _("That code is not right. Check the clock of your phone and enter the current code.")
        )
    with transaction.atomic(durable=True):
        # last_t records the code just used, so it cannot be replayed at the next login.
        device = TOTPDevice.objects.create(
            user=user,
            name=TOTP_DEVICE_NAME,
            key=key,
            confirmed=True,
            last_t=totp.t(),
            drift=totp.drift,
        )
        request.session.pop(ENROLMENT_KEY, None)
        request.session.cycle_key()
        django_otp.login(request, device)
        record(
            action=Action.TWO_FACTOR_ENABLED,
            actor=user,
            request=request,
            target_type="otp_device",
            target_id=device.pk,
        )
        # Tokens taken with the password alone would outlive the protection just added.
        end_api_tokens(request=request, user=user, reason="two-factor enabled")
    return device


def remove_two_factor(*, request: AuthenticatedRequest, password: str) -> None:
    """Delete every one-time-code device of the user after the password is entered again."""
    user = request.user
    _check_current_password(
        request=request, user=user, password=password, step="two-factor removal"
    )
    with transaction.atomic(durable=True):
        devices = list(devices_for_user(user, confirmed=None))
        for device in devices:
            device.delete()
        request.session.pop(DEVICE_ID_SESSION_KEY, None)
        record(
            action=Action.TWO_FACTOR_DISABLED,
            actor=user,
            request=request,
            details={"devices_removed": len(devices)},
        )
        end_api_tokens(request=request, user=user, reason="two-factor removed")


# --- API tokens -----------------------------------------------------------------------------


def issue_api_token(
    *, request: HttpRequest, username: str, password: str, otp_token: str = ""
) -> tuple[ApiToken, str]:
    """A new API token for these credentials, and its secret, which is shown this once: only
    its keyed digest is stored. Accounts with a device must give a current code; accounts that
    must use two-factor authentication and have no device get no token. The token ends after
    ``API_TOKEN_LIFETIME_DAYS``, or ``API_TOKEN_IDLE_DAYS`` without use."""
    reservation = _reserve_or_refuse(
        request=request, username=username, step="password", with_code=bool(otp_token)
    )
    if reservation.account_wide:
        user, device = _check_password_and_code(
            request=request,
            username=username,
            password=password,
            token=otp_token,
            reservation=reservation,
        )
    else:
        user = _check_password(
            request=request, username=username, password=password, reservation=reservation
        )
        device = None
        if has_two_factor(user):
            if not otp_token:
                raise TwoFactorRequired(
                    _(
                        "This account uses two-factor authentication: "
                        "give the current code as otp_token."
                    )
                )
            device = check_two_factor_code(request=request, user=user, token=otp_token)
        elif two_factor_required(user):
            raise TwoFactorSetupRequired(
                _(
                    "This account must use two-factor authentication: set up an authenticator "
                    "app on the portal's Two-factor page, then request the token with its "
                    "current code as otp_token."
                )
            )
    secret = ApiToken.new_secret()
    with transaction.atomic(durable=True):
        token = ApiToken.objects.create(
            user=user,
            digest=secret_digest(secret, purpose=TOKEN_PURPOSE),
            prefix=secret[:8],
            two_factor_verified=device is not None,
        )
        _signed_in(request=request, user=user)
        record(
            action=Action.TOKEN_ISSUED,
            actor=user,
            request=request,
            target_type="api_token",
            target_id=token.pk,
            details={"two_factor": device is not None},
        )
    return token, secret


def end_api_tokens(*, request: HttpRequest, user: User, reason: str) -> int:
    """Delete every API token of ``user`` (each revocation audited, saying why)."""
    return revoke_api_tokens(
        request=request, tokens=user.api_tokens.select_related("user"), reason=reason
    )


# --- Administration ----------------------------------------------------------------------------


def may_change_colleague(colleague: User, administered: set[int]) -> bool:
    """Whether an administrator of the ``administered`` organizations may change a user's
    account (name, email, password, staff status): never a superuser, and only someone all of
    whose memberships are in those organizations. A user who also belongs elsewhere, or to no
    organization (an outside recipient), is not one organization's to take over."""
    if colleague.is_superuser or not administered:
        return False
    organizations = set(colleague.memberships.values_list("organization_id", flat=True))
    return bool(organizations) and organizations <= administered


def record_administration(
    *, request: HttpRequest, obj, change: str, organization_id: int | None, details: dict
) -> None:
    """One audit event for an administrator's change in the admin (added, changed, deleted)."""
    record(
        action=Action.ACCOUNTS_CHANGED,
        request=request,
        organization_id=organization_id,
        target_type=obj._meta.model_name,
        target_id=obj.pk,
        details={"change": change, "object": str(obj), **details},
    )


def save_organization(
    *, request: HttpRequest, organization: Organization, changed_fields: list[str]
) -> None:
    """Save an organization edited by an administrator; a change to its sharing policy decides
    what every one of its users may offer, so it goes into the audit trail with the new values."""
    organization.save()
    if not changed_fields:
        return
    record(
        action=Action.POLICY_CHANGED,
        request=request,
        organization_id=organization.pk,
        target_type="organization",
        target_id=organization.pk,
        # A list of pairs, not a dict: field names such as "allow_link_password" would read as
        # secrets to the audit trail's redaction, which masks values under such keys.
        details={
            "changes": [
                {"field": name, "value": getattr(organization, name)}
                for name in sorted(changed_fields)
            ]
        },
    )


@transaction.atomic
def revoke_api_tokens(*, request: HttpRequest, tokens: Iterable[ApiToken], reason: str = "") -> int:
    """Delete API tokens (they stop working at once), each revocation audited."""
    revoked = 0
    for token in tokens:
        details = {"owner": token.user.get_username(), "prefix": token.prefix}
        if reason:
            details["reason"] = reason
        record(
            action=Action.TOKEN_REVOKED,
            request=request,
            target_type="api_token",
            target_id=token.pk,
            details=details,
        )
        token.delete()
        revoked += 1
    return revoked


# --- Registration ------------------------------------------------------------------------------


class RegistrationRefused(Exception):
    """An account cannot be made; ``message`` is safe to show to the person registering."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class AccountExists(RegistrationRefused):
    pass


def _free_username(email: str) -> str:
    """The address as username (lowercase, as people type it), or, where another account already
    uses that name without the address, the first free variant of it."""
    base = email.strip().lower()[:140]
    candidate, n = base, 1
    # Case-insensitively free: "GP@x" and "gp@x" must never name two people at the login page.
    while User._default_manager.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def register_user(
    *,
    email: str,
    first_name: str,
    last_name: str,
    password: str,
    language: str,
    mobile: str = "",
    physician_number: str = "",
    request: HttpRequest | None = None,
    organization_id: int | None = None,
    audit_details: dict | None = None,
) -> User:
    """Create the account of someone who proved they receive mail at ``email`` (an invitation's
    link reached them there). The account belongs to no organization: it sees what was shared
    with it, in its personal worklist. Its username is the address.

    Raises AccountExists when an account already has the address (case-insensitively; also when
    a concurrent registration wins the race), and ValidationError ({field: [messages]}) for a
    password Django's validators refuse, a mobile number that is not one, or another bad field.
    Runs in the caller's transaction, where it writes USER_REGISTERED (``organization_id`` and
    ``audit_details`` say, for the trail, who invited them)."""
    email = email.strip()
    if User._default_manager.filter(email__iexact=email).exists():
        raise AccountExists(_("An account with this email address already exists."))
    user = User(
        username=_free_username(email),
        email=email,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        physician_number=physician_number.strip(),
        language=language,
    )
    errors: dict[str, list] = {}
    try:
        user.mobile = normalize_mobile(mobile)
    except ValidationError as exc:
        errors["mobile"] = exc.messages
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        errors["password"] = exc.messages
    try:
        # Email form, name lengths, language choice. Not the username: addresses may hold
        # characters Django's username validator refuses, and the login page matches any text.
        user.full_clean(exclude=["password", "username"], validate_constraints=False)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    try:
        # A savepoint: a registration that lost the race to the same address fails alone,
        # leaving the caller's transaction usable to report it.
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError as exc:
        raise AccountExists(_("An account with this email address already exists.")) from exc
    record(
        action=Action.USER_REGISTERED,
        actor=user,
        request=request,
        organization_id=organization_id,
        target_type="user",
        target_id=user.pk,
        details={"email": user.email, **(audit_details or {})},
    )
    return user


def set_language(*, user, language: str) -> str:
    """The language menu's choice: the portal's code for ``language``, which a logged-in user's
    account keeps (applied at every request, on any device; messages to them are written in it
    too). An unknown language is refused."""
    chosen = supported_language(language)
    if chosen is None:
        raise ValidationError(_("This language is not available."), code="language")
    if user.is_authenticated and user.language != chosen:
        user.language = chosen
        user.save(update_fields=["language"])
    return chosen
