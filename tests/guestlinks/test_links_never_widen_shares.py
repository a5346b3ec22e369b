"""A guest link is further sharing: a study held through a share is sent by link only when the
share allowed further sharing on terms a link keeps (identified, with the report, no SMS code),
and never for longer than the share lasts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from guestlinks.selectors import LinkTarget
from guestlinks.services.creation import LinkOptions, create_link
from sharing.services.entries import end_of_day
from tests.accounts.helpers import HttpsClient
from tests.sharing.conftest import share

pytestmark = pytest.mark.django_db


def send(sender, study, **options):
    return create_link(
        sender=sender,
        target=LinkTarget(study=study),
        options=LinkOptions(**options),
        acknowledged=True,
    )


def test_a_share_allowing_further_sharing_may_be_sent_by_link_but_not_past_its_end(
    alice, bob, study
):
    until = timezone.localdate() + timedelta(days=3)
    share(alice, study, ("user", bob.pk), allow_further_sharing=True, valid_until=until)

    # The default expiry (longer than three days) is cut to the share's end.
    made = send(bob, study)
    assert made.link.expires_at == end_of_day(until)
    with pytest.raises(ValidationError) as refused:
        send(bob, study, expires_in_days=5)
    assert "cannot stay valid longer" in refused.value.message_dict["expires_in_days"][0]
    assert send(bob, study, expires_in_days=2).link.expires_at < end_of_day(until)


@pytest.mark.parametrize(
    "terms",
    [
        {"allow_further_sharing": False},
        {"allow_further_sharing": True, "anonymize": True},
    ],
    ids=["no further sharing", "anonymized"],
)
def test_a_narrower_share_cannot_be_sent_by_link_and_the_dialog_says_why(terms, alice, bob, study):
    share(alice, study, ("user", bob.pk), **terms)
    with pytest.raises(PermissionDenied):
        send(bob, study)

    client = HttpsClient()
    client.force_login(bob)
    dialog = client.get(
        reverse("guestlinks:dialog"),
        {"study": study.study_uid},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    assert dialog.status_code == 403
    assert "it was shared with you on terms a link would widen" in dialog.content.decode()


def test_the_owner_still_sends_links_as_before(alice, study):
    assert send(alice, study).link.study == study
