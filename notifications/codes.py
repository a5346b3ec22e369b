"""One-time codes texted as a second factor (guest links' and shares'): making one, reading what
a person typed, and the wait before another may be sent. Storing, checking and counting them
belong to the feature that asks for them."""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from django.utils.translation import ngettext

SMS_CODE_DIGITS = 6
_SPACING = re.compile(r"[\s-]+")


def new_code() -> str:
    return f"{secrets.randbelow(10**SMS_CODE_DIGITS):0{SMS_CODE_DIGITS}d}"


def normalize_code(text: str) -> str:
    """What the person typed, without spaces or dashes ("123 456")."""
    return _SPACING.sub("", text or "")


def is_code_shaped(code: str) -> bool:
    """Six digits (after :func:`normalize_code`): anything else is not a guess at all."""
    return code.isdigit() and len(code) == SMS_CODE_DIGITS


def resend_wait(last_sent_at: datetime | None, cooldown_seconds: int, now: datetime) -> int:
    """Whole seconds before another code may be sent (0: now)."""
    if last_sent_at is None:
        return 0
    waited = (now - last_sent_at).total_seconds()
    if waited >= cooldown_seconds:
        return 0
    return max(1, int(cooldown_seconds - waited + 0.999))


def resend_wait_message(seconds: int) -> str:
    return ngettext(
        "We just sent a code. Wait %(seconds)d second before asking for a new one.",
        "We just sent a code. Wait %(seconds)d seconds before asking for a new one.",
        seconds,
    ) % {"seconds": seconds}
