"""The Share dialog and POST /api/v1/shares/ find the studies a user may share by one rule: in
one browser session, a study one dialog shares is one the API shares too."""

import pytest
from django.urls import reverse

from sharing.models import Share
from tests.accounts.helpers import HttpsClient
from tests.sharing.conftest import share
from tests.sharing.test_two_factor import MOBILE, codes_texted

pytestmark = pytest.mark.django_db

DIALOG = reverse("sharing:dialog")
API = "/api/v1/shares/"


def test_a_study_opened_with_an_sms_code_is_shared_alike_by_the_dialog_and_the_api(
    alice, bob, dana, study
):
    """bob holds the study through alice's share asking for an SMS code, which lets him share
    further; he enters the code in his browser. The dialog shares the study in that session,
    and so does the API when the same session calls it."""
    bob.mobile = MOBILE
    bob.save(update_fields=["mobile"])
    dana.mobile = "+32470999888"
    dana.save(update_fields=["mobile"])
    recipient = share(
        alice, study, ("user", bob.pk), two_factor=True, allow_further_sharing=True
    ).recipients.get()
    browser = HttpsClient()
    browser.force_login(bob)
    code_page = reverse("sharing:two_factor", args=[recipient.pk])
    browser.post(code_page, {"action": "send_code"})
    (code,) = codes_texted(recipient)
    assert browser.post(code_page, {"action": "verify", "code": code}).status_code == 303

    dialog = browser.post(
        DIALOG,
        {
            "study": [study.study_uid],
            "access": "report_read",
            "reason": "Second opinion",
            "patient_agreed": "on",
            "intent": "share",
            "recipient-0-kind": "user",
            "recipient-0-target": str(dana.pk),
        },
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    api = browser.post(
        API,
        {
            "studies": [study.study_uid],
            "recipients": [{"user": dana.pk}],
            "access": "report_read",
            "reason": "Second opinion",
            "patient_agreed": True,
        },
        content_type="application/json",
    )

    assert dialog.status_code == 200
    assert api.status_code == 201, api.json()
    assert Share.objects.filter(sender=bob).count() == 2
