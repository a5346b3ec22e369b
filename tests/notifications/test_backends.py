"""The backends: Twilio through its real SDK (only the HTTP layer is replaced), SMTP errors sorted
into "try again later" and "never", and the development backends."""

from __future__ import annotations

import io
import json
import smtplib
from urllib.parse import urlparse

import pytest
from django.core import mail
from twilio.http import HttpClient
from twilio.http.response import Response

from notifications import backends
from notifications.backends import (
    ConsoleSmsBackend,
    DeliveryError,
    EmailBackend,
    OutboxSmsBackend,
    PermanentDeliveryError,
    TwilioSmsBackend,
    get_backend,
)
from notifications.models import Channel
from tests.notifications.conftest import LINK

pytestmark = pytest.mark.django_db

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-not-real"


class RecordingHttpClient(HttpClient):
    """Twilio's HTTP layer, answering with scripted responses and keeping each request."""

    def __init__(self, *responses: Response):
        super().__init__(logger=None, is_async=False)
        self.responses = list(responses)
        self.requests: list[dict] = []

    def request(
        self,
        method,
        url,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ):
        self.requests.append({"method": method, "url": url, "data": data, "auth": auth})
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response


def created(sid: str = "SM" + "f" * 32) -> Response:
    return Response(201, json.dumps({"sid": sid, "status": "queued", "account_sid": ACCOUNT_SID}))


def twilio_error(status: int, code: int, message: str) -> Response:
    return Response(status, json.dumps({"status": status, "code": code, "message": message}))


@pytest.fixture
def twilio(settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = "+3225550100"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    return settings


@pytest.fixture
def sms(queue):
    return queue("+32470123456", channel=Channel.SMS, template="sms_code")


# --- Twilio ----------------------------------------------------------------------------------


def test_twilio_sends_to_from_and_body_to_the_accounts_messages(twilio, sms):
    client = RecordingHttpClient(created("SM123"))

    provider_id = TwilioSmsBackend(http_client=client).send(sms)

    assert provider_id == "SM123"
    [request] = client.requests
    assert request["method"] == "POST"
    url = urlparse(request["url"])
    assert url.hostname == "api.twilio.com"
    assert url.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request["data"] == {"To": "+32470123456", "Body": sms.body_text, "From": "+3225550100"}
    assert request["auth"] == (ACCOUNT_SID, AUTH_TOKEN)


def test_twilio_uses_the_messaging_service_without_a_from_number(twilio, sms):
    twilio.TWILIO_FROM_NUMBER = ""
    twilio.TWILIO_MESSAGING_SERVICE_SID = "MG" + "a" * 32
    client = RecordingHttpClient(created())

    TwilioSmsBackend(http_client=client).send(sms)

    data = client.requests[0]["data"]
    assert data["MessagingServiceSid"] == "MG" + "a" * 32
    assert "From" not in data


@pytest.mark.parametrize(
    "code",
    [21211, 21614, 21610],
)
def test_twilio_refusing_the_number_is_permanent(twilio, sms, code):
    client = RecordingHttpClient(
        twilio_error(400, code, "The 'To' number +32470123456 is not a valid phone number.")
    )

    with pytest.raises(PermanentDeliveryError) as refused:
        TwilioSmsBackend(http_client=client).send(sms)

    assert f"error {code}" in str(refused.value)
    assert "+32470123456" not in str(refused.value)


def test_unknown_twilio_4xx_is_permanent_and_keeps_its_text(twilio, sms):
    client = RecordingHttpClient(twilio_error(400, 21999, "Something about +32 470 12 34 56"))

    with pytest.raises(PermanentDeliveryError) as refused:
        TwilioSmsBackend(http_client=client).send(sms)

    assert str(refused.value) == (
        "Twilio answered 400, error 21999: Unable to create record: Something about [number]"
    )


@pytest.mark.parametrize(
    "response",
    [
        Response(503, "Service Unavailable"),
        twilio_error(500, 20500, "Internal Server Error"),
        twilio_error(429, 20429, "Too Many Requests"),
        twilio_error(401, 20003, "Authenticate"),  # the account's credentials: fixable
    ],
)
def test_twilio_outage_or_throttling_is_retryable(twilio, sms, response):
    client = RecordingHttpClient(response)

    with pytest.raises(DeliveryError) as failed:
        TwilioSmsBackend(http_client=client).send(sms)

    assert not isinstance(failed.value, PermanentDeliveryError)
    assert f"Twilio answered {response.status_code}" in str(failed.value)


def test_twilio_unreachable_is_retryable(twilio, sms):
    import requests

    client = RecordingHttpClient(requests.ConnectionError("Max retries exceeded"))

    with pytest.raises(DeliveryError, match="Twilio unreachable: ConnectionError"):
        TwilioSmsBackend(http_client=client).send(sms)


def test_twilio_without_credentials_is_retryable_until_configured(settings, sms):
    settings.TWILIO_ACCOUNT_SID = ""

    with pytest.raises(DeliveryError, match="Twilio is not configured"):
        TwilioSmsBackend(http_client=RecordingHttpClient()).send(sms)


def test_twilio_http_client_comes_from_the_settings(twilio, sms):
    client = RecordingHttpClient(created("SM-configured"))
    twilio.TWILIO_HTTP_CLIENT = client
    twilio.SMS_BACKEND = "notifications.backends.TwilioSmsBackend"

    assert get_backend(Channel.SMS).send(sms) == "SM-configured"
    assert len(client.requests) == 1


def test_twilio_defaults_to_its_own_client_with_a_timeout(twilio):
    twilio.TWILIO_HTTP_CLIENT = None
    twilio.TWILIO_TIMEOUT = 12

    backend = TwilioSmsBackend()

    assert type(backend.http_client).__name__ == "TwilioHttpClient"
    assert backend.http_client.timeout == 12


# --- Email -----------------------------------------------------------------------------------


def test_email_goes_out_with_both_parts_and_its_headers(queue):
    message = queue(language="nl")

    provider_id = EmailBackend().send(message)

    [email] = mail.outbox
    assert email.to == ["dr.smith@example.org"]
    assert email.subject == message.subject
    assert email.body == message.body_text
    assert email.alternatives[0].content == message.body_html
    assert email.alternatives[0].mimetype == "text/html"
    assert email.extra_headers["Message-ID"] == provider_id
    assert email.extra_headers["Content-Language"] == "nl"
    assert email.extra_headers["Auto-Submitted"] == "auto-generated"


class FailingConnection:
    def __init__(self, error):
        self.error = error

    def open(self):
        return True

    def close(self):
        pass

    def send_messages(self, messages):
        raise self.error


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (smtplib.SMTPRecipientsRefused({"x@y.org": (550, b"5.1.1 No such user")}), True),
        (smtplib.SMTPRecipientsRefused({"x@y.org": (450, b"4.2.1 Mailbox busy")}), False),
        (smtplib.SMTPDataError(554, b"5.7.1 Message refused"), True),
        (smtplib.SMTPDataError(451, b"4.3.0 Try again later"), False),
        (smtplib.SMTPSenderRefused(553, b"5.7.1 Sender not allowed", "noreply@x"), False),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials"), False),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False),
        (ConnectionRefusedError(111, "Connection refused"), False),
        (TimeoutError("timed out"), False),
    ],
)
def test_smtp_errors_are_sorted_into_retryable_and_permanent(queue, monkeypatch, error, permanent):
    message = queue()
    monkeypatch.setattr(backends, "get_connection", lambda **kwargs: FailingConnection(error))

    with pytest.raises(DeliveryError) as failed:
        EmailBackend().send(message)

    assert isinstance(failed.value, PermanentDeliveryError) is permanent
    assert message.body_text not in str(failed.value)


def test_smtp_answer_is_kept_in_the_error(queue, monkeypatch):
    error = smtplib.SMTPRecipientsRefused({"x@y.org": (550, b"5.1.1 No such user")})
    monkeypatch.setattr(backends, "get_connection", lambda **kwargs: FailingConnection(error))

    with pytest.raises(PermanentDeliveryError) as refused:
        EmailBackend().send(queue())

    assert str(refused.value) == "Recipient refused: 550 5.1.1 No such user"


# --- Development backends --------------------------------------------------------------------


def test_console_backend_prints_a_readable_block_in_development(sms, settings):
    settings.DEBUG = True
    stream = io.StringIO()

    provider_id = ConsoleSmsBackend(stream=stream).send(sms)

    printed = stream.getvalue()
    assert f"SMS to +32470123456 (message {sms.pk}, sms_code, en)" in printed
    assert sms.body_text in printed
    assert "482913" in printed
    assert provider_id == f"console-{sms.pk}"


def test_console_backend_keeps_codes_and_links_out_of_server_logs(queue, sms, settings, caplog):
    settings.DEBUG = False
    link_sms = queue("+32470123456", channel=Channel.SMS, template="guest_link")
    stream = io.StringIO()

    ConsoleSmsBackend(stream=stream).send(sms)
    ConsoleSmsBackend(stream=stream).send(link_sms)

    printed = stream.getvalue()
    assert "482913" not in printed and LINK not in printed
    assert "Your code is ••••••." in printed and "[link]" in printed
    assert "no SMS provider is configured" in caplog.text


def test_outbox_backend_keeps_the_row_as_the_sms(outbox_backend, sms):
    assert outbox_backend.send(sms) == f"outbox-{sms.pk}"


def test_sms_backend_is_chosen_by_setting(settings):
    settings.SMS_BACKEND = "notifications.backends.ConsoleSmsBackend"
    assert isinstance(get_backend(Channel.SMS), ConsoleSmsBackend)
    settings.SMS_BACKEND = "notifications.backends.OutboxSmsBackend"
    assert isinstance(get_backend(Channel.SMS), OutboxSmsBackend)
    assert isinstance(get_backend(Channel.EMAIL), EmailBackend)
    with pytest.raises(ValueError, match="No backend"):
        get_backend("pigeon")
