"""The message that carries a guest link to its recipient, by email or SMS: queued in the
caller's transaction when the link is created, or, for a link confirmed by email, once the
recipient has confirmed their address. Its context says who sends it and what the recipient
will need to open it; never the password.
"""

from __future__ import annotations

from typing import Any

from guestlinks.models import GuestLink
from notifications.services import queue_message

# The outbox's name for messages about a guest link (the development outbox shows them to the
# link's sender).
MESSAGE_CONCERNING = "guest_link"
LINK_TEMPLATE = "guest_link"


def sender_name(link: GuestLink) -> str:
    """Who the recipient is told sends the link: its sender, or their organization once the
    sender's account is gone."""
    sender = link.created_by
    if sender is None:
        return link.organization.name
    return sender.display_name


def link_message_context(link: GuestLink, *, url: str) -> dict[str, Any]:
    """The context of the ``guest_link`` email and SMS (see notifications.services)."""
    return {
        "sender_name": sender_name(link),
        "link": url,
        "message": link.message,
        "expires_at": link.expires_at,
        "max_uses": link.max_uses,
        "password_required": bool(link.password_hash),
        "login_required": link.login_required,
    }


def queue_link_message(link: GuestLink, *, channel: str, to: str, url: str) -> None:
    """Queue the link's address to ``to`` by ``channel``, in the link's language."""
    queue_message(
        channel=channel,
        to=to,
        template=LINK_TEMPLATE,
        context=link_message_context(link, url=url),
        language=link.language,
        concerning=(MESSAGE_CONCERNING, link.pk),
    )
