"""A whole user action commits on its own (``transaction.atomic(durable=True)``): run inside a
caller's transaction, it refuses at once and writes nothing, rather than silently joining a
transaction that could still roll back its audit events and messages after the user was told it
was done."""

import pytest
from django.db import transaction

from audit.models import AuditEvent
from guestlinks.models import GuestLink
from guestlinks.selectors import LinkTarget
from guestlinks.services.creation import LinkOptions, create_link
from notifications.models import Message
from sharing.models import Share
from studies.models import Folder
from studies.services.folders import create_folder
from studies.services.worklists import location_worklist
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db


def _share(alice, bob, study, location):
    share(alice, study, ("user", bob.pk))


def _send_link(alice, bob, study, location):
    create_link(
        sender=alice,
        target=LinkTarget(study=study),
        options=LinkOptions(email="guest@example.org"),
        acknowledged=True,
    )


def _make_folder(alice, bob, study, location):
    create_folder(user=alice, worklist=location_worklist(location), name="Tumour board")


@pytest.mark.parametrize("action", [_share, _send_link, _make_folder])
def test_a_whole_action_refuses_to_run_inside_another_transaction(
    action, alice, bob, study, location
):
    counts = [model.objects.count() for model in (Share, GuestLink, Folder, AuditEvent, Message)]

    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        action(alice, bob, study, location)

    assert [
        model.objects.count() for model in (Share, GuestLink, Folder, AuditEvent, Message)
    ] == counts


@pytest.mark.parametrize("action", [_share, _send_link, _make_folder])
def test_the_same_action_on_its_own_commits(action, alice, bob, study, location):
    before = AuditEvent.objects.count()

    action(alice, bob, study, location)

    assert AuditEvent.objects.count() > before
