"""Who caused a message: the sender of the share or the guest link it concerns.

Messages name what they concern (``Message.concerning_type`` and ``concerning_id``), not who
caused them, and this app imports no feature app. Each app that queues messages registers, for
its kind of concern, the ids of those a user sent (``register_sender_concerns`` in its
``AppConfig.ready()``); the development outbox lists a sender's messages through them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q

SentBy = Callable[[AbstractBaseUser], Iterable[int]]

_sent_by: dict[str, SentBy] = {}


def register_sender_concerns(concerning_type: str, sent_by: SentBy) -> None:
    """``sent_by(user)``: the ids of the ``concerning_type`` objects the user sent."""
    _sent_by[concerning_type] = sent_by


def caused_by(user: AbstractBaseUser) -> Q:
    """The messages concerning what the user sent (a share's notification and invitations, a
    guest link's email, SMS and codes)."""
    condition = Q(pk__in=[])
    for concerning_type, sent_by in _sent_by.items():
        ids = [str(pk) for pk in sent_by(user)]
        if ids:
            condition |= Q(concerning_type=concerning_type, concerning_id__in=ids)
    return condition
