"""Fixtures for the audit stories: a trail with some history, and an admin session that passed
two-factor authentication."""

import pytest

from audit.models import Action, Outcome
from audit.services import record
from tests.accounts.helpers import (
    HttpsAPIClient,
    HttpsClient,
    make_device,
    plain_static_storage,
    verified_login,
)
from tests.factories import make_study


@pytest.fixture(autouse=True)
def organization_chains(settings):
    """The stories of the chains themselves (appending, tampering, verifying, checkpoints) read
    the organization's chain: lanes off, as on SQLite, behind a pooler in transaction mode or
    with every lane held, every event goes there. Lanes have stories of their own (test_lanes),
    and a test that asks for lanes sets ``AUDIT_LANES`` itself."""
    settings.AUDIT_LANES = 0


@pytest.fixture
def trail(org, other_org, alice, carol, dana):
    """A morning at St. Elsewhere and Riverside: logins, a study viewed and downloaded, a failed
    login, a report changed. Returns the events oldest first."""
    study = make_study(org)
    events = [
        record(action=Action.LOGIN, actor=alice, organization_id=org.pk),
        record(action=Action.STUDY_VIEWED, actor=alice, study=study),
        record(action=Action.STUDY_DOWNLOADED, actor=alice, study=study, details={"files": 3}),
        record(
            action=Action.LOGIN_FAILED,
            actor_label="unknown user",
            outcome=Outcome.MINOR_FAILURE,
            details={"username": "mallory", "password": "guess123"},
        ),
        record(action=Action.LOGIN, actor=carol, organization_id=other_org.pk),
        record(action=Action.REPORT_CHANGED, actor=dana, study=study, details={"length": 812}),
        record(action=Action.LOGOUT, actor=alice, organization_id=org.pk),
    ]
    return events


@pytest.fixture
def browser(settings):
    """A browser on the portal: HTTPS (the portal redirects plain HTTP), pages linking to
    unhashed static files (no collectstatic in tests)."""
    plain_static_storage(settings)
    return HttpsClient()


@pytest.fixture
def api_client():
    return HttpsAPIClient()


@pytest.fixture
def verified_client(browser):
    """Logs a user into the admin: the portal's admin site admits only staff whose session was
    verified with a one-time code."""

    def login(user):
        verified_login(browser, user, make_device(user))
        return browser

    return login
