"""Fixtures for the share stories: a study alice holds through her Radiology location, members
with chosen permissions, and a helper that shares with sensible defaults."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Role
from sharing.services.shares import Recipient, ShareOptions, share_studies
from tests.conftest import make_user
from tests.factories import make_study


@pytest.fixture
def study(org, location):
    """A CT of Jane Doe received at St. Elsewhere's Radiology location (alice's worklist)."""
    return make_study(org, location=location)


def member(username, org, location, perms, **extra):
    role = Role.objects.create(name=f"Role of {username}", permissions=[p.value for p in perms])
    user = make_user(username, **extra)
    membership = Membership.objects.create(user=user, organization=org, role=role)
    membership.locations.add(location)
    return user


def options(**overrides) -> ShareOptions:
    values = {"access": "report_read", "reason": "Second opinion", "patient_agreed": True}
    values.update(overrides)
    return ShareOptions(**values)


def share(sender, studies, *recipients, **overrides):
    """``share(alice, study, ("user", bob.pk), access="report_write")``."""
    if not isinstance(studies, list | tuple):
        studies = [studies]
    return share_studies(
        sender=sender,
        studies=studies,
        recipients=[Recipient(kind, value) for kind, value in recipients],
        options=options(**overrides),
    )
