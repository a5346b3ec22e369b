"""The lockout rules for guesses at an account's secrets (passwords, one-time codes), counted by
``portal.throttle`` per client address (``portal.clients.client_ip``).

Three counters, within ``LOGIN_FAILURE_WINDOW`` seconds from each one's first failure:

- the account *from this address*: ``LOGIN_FAILURE_LIMIT`` failures lock that pair until the
  window ends. Someone who knows a username locks out only themselves, not its owner;
- the address, over all accounts: ``LOGIN_FAILURE_LIMIT_PER_ADDRESS`` (wider: a hospital's staff
  share one NAT address);
- the account from everywhere: past ``LOGIN_FAILURE_LIMIT_PER_ACCOUNT`` failures (a guesser with
  many addresses) further attempts are spaced by a delay that starts at ``LOGIN_FAILURE_DELAY``
  seconds and doubles. Not for an address the account signed in from within
  ``LOGIN_KNOWN_ADDRESS_DAYS`` (``LoginAddress``), and not for a login that gives a valid code
  from the account's authenticator app (``accounts.services`` answers such a login the same
  whichever of password and code is wrong, so skipping the delay reveals nothing).

Each attempt is counted before the secret is checked (so concurrent attempts cannot overrun a
limit) and handed back when it was no failed guess.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import LoginAddress, User
from portal import throttle


def _account(username: str) -> str:
    # Hashed so any username is a valid cache key, and folded so "Alice" and "alice" share the
    # counters: the backend matches usernames exactly, but an attacker must not get a fresh
    # allowance per spelling.
    return hashlib.sha256(username.strip().casefold().encode()).hexdigest()


def _hard_limits(*, username: str, ip: str | None) -> dict[str, int]:
    account, address = _account(username), ip or "unknown"
    return {
        f"auth-failures:pair:{account}:{address}": settings.LOGIN_FAILURE_LIMIT,
        f"auth-failures:address:{address}": settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS,
    }


def _account_key(username: str) -> str:
    return f"auth-failures:account:{_account(username)}"


def throttle_keys(*, username: str, ip: str | None) -> list[str]:
    """The pair's, the address's and the account's counters, in that order."""
    return [*_hard_limits(username=username, ip=ip), _account_key(username)]


def is_known_address(*, username: str, ip: str | None) -> bool:
    """Whether the account of this username signed in from this address recently."""
    if not ip:
        return False
    cutoff = timezone.now() - timedelta(days=settings.LOGIN_KNOWN_ADDRESS_DAYS)
    return LoginAddress.objects.filter(
        user__username=username, ip=ip, last_login_at__gte=cutoff
    ).exists()


def remember_address(*, user: User, ip: str | None) -> None:
    """Note a successful sign-in of ``user`` from ``ip``, and forget its addresses that are too
    old to trust. Runs in the caller's transaction (the login's)."""
    if not ip:
        return
    now = timezone.now()
    LoginAddress.objects.update_or_create(user=user, ip=ip, defaults={"last_login_at": now})
    LoginAddress.objects.filter(
        user=user, last_login_at__lt=now - timedelta(days=settings.LOGIN_KNOWN_ADDRESS_DAYS)
    ).delete()


@dataclass
class Reservation:
    """One attempt, counted. ``retry_at`` is set when it is refused: ``account_wide`` says the
    account's ceiling refused it (the pair's and the address's counters then still hold it, for
    a caller that lets it go on with a one-time code, or hands it back)."""

    keys: tuple[str, ...]
    retry_at: datetime | None = None
    account_wide: bool = False

    def release(self) -> None:
        """Hand the attempt back: it was no failed guess."""
        throttle.hand_back(*self.keys)
        self.keys = ()


def _moment(until: int) -> datetime:
    return datetime.fromtimestamp(until, tz=UTC)


def reserve(*, username: str, ip: str | None, ceiling: bool = True) -> Reservation:
    """Count an attempt at this account from this address. ``ceiling=False`` leaves out the
    account's ceiling (for a code asked after the right password: the device has its own
    growing delay)."""
    limits = _hard_limits(username=username, ip=ip)
    until = throttle.reserve(limits, window=settings.LOGIN_FAILURE_WINDOW)
    if until is not None:
        return Reservation(keys=(), retry_at=_moment(until))
    keys = tuple(limits)
    if not ceiling or is_known_address(username=username, ip=ip):
        return Reservation(keys=keys)
    account = _account_key(username)
    until = throttle.reserve_spaced(
        account,
        free=settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT,
        delay=settings.LOGIN_FAILURE_DELAY,
        window=settings.LOGIN_FAILURE_WINDOW,
    )
    if until is None:
        return Reservation(keys=(*keys, account))
    return Reservation(keys=keys, retry_at=_moment(until), account_wide=True)


def clear_failures(*, username: str, ip: str | None) -> None:
    """Forget the failures of this account from this address (it has just signed in from
    there). Not the address's, which other accounts' failures made, nor the account's from
    elsewhere: a success must not give a guesser a fresh allowance."""
    throttle.clear(throttle_keys(username=username, ip=ip)[0])
