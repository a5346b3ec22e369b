"""Fixtures for the outbox stories: messages queued the way feature apps queue them, a backend
that does what each test scripts, and a Celery app that runs tasks in this process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from notifications import delivery
from notifications.backends import OutboxSmsBackend
from notifications.models import Channel, Message
from notifications.services import queue_message
from portal.celery import app as celery_app
from tests.accounts.helpers import HttpsClient, make_device, plain_static_storage, verified_login

LINK = "https://portal.example.org/l/Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC10b2tlbg"


def share_context(**overrides: Any) -> dict[str, Any]:
    return {
        "sender_name": "Dr. Alice Tester",
        "patient_initials": "J. D.",
        "study_description": "CT Chest",
        "study_date": date(2024, 5, 17),
        "link": LINK,
        "message": "Please look at the left lower lobe.",
        "urgent": False,
        **overrides,
    }


@pytest.fixture(autouse=True)
def _tasks_in_process():
    """Whatever the environment says about a broker, these stories run tasks in this process."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _outbox_settings(settings):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 4
    settings.NOTIFICATIONS_BACKOFF_BASE = 30
    settings.NOTIFICATIONS_BACKOFF_CEILING = 3600
    settings.NOTIFICATIONS_LEASE_SECONDS = 300
    settings.NOTIFICATIONS_QUEUED_GRACE = 30
    settings.SMS_BACKEND = "notifications.backends.OutboxSmsBackend"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_NAME = "Study Portal"
    return settings


@pytest.fixture
def queue(db) -> Callable[..., Message]:
    """Queue a share notification (or any template) as a feature app does. The on-commit publish
    does not run: the test's transaction never commits."""

    def make(
        to: str = "dr.smith@example.org",
        *,
        channel: str = Channel.EMAIL,
        template: str = "share_notification",
        language: str = "en",
        **context: Any,
    ) -> Message:
        if template == "sms_code":
            values = {"code": "482913", **context}
        else:
            values = share_context(**context)
        return queue_message(
            channel=channel,
            to=to,
            template=template,
            context=values,
            language=language,
            concerning=("share", 42),
        )

    return make


class ScriptedBackend:
    """Answers each send with the next scripted outcome: a provider id, or an exception to raise.
    With nothing scripted it accepts the message."""

    def __init__(self):
        self.outcomes: list[Any] = []
        self.sent: list[int] = []

    def send(self, message: Message) -> str:
        self.sent.append(message.pk)
        outcome = self.outcomes.pop(0) if self.outcomes else f"provider-{message.pk}"
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.fixture
def backend(monkeypatch) -> ScriptedBackend:
    scripted = ScriptedBackend()
    monkeypatch.setattr(delivery, "get_backend", lambda channel: scripted)
    return scripted


@pytest.fixture
def outbox_backend() -> OutboxSmsBackend:
    return OutboxSmsBackend()


@pytest.fixture
def browser(settings):
    plain_static_storage(settings)
    return HttpsClient()


@pytest.fixture
def verified_client(browser):
    """Logs a user into the admin, which admits only staff verified by a one-time code."""

    def login(user):
        verified_login(browser, user, make_device(user))
        return browser

    return login
