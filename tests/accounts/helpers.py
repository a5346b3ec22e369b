"""Clients and two-factor helpers for the accounts and portal tests."""

import re
import time

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.authentication import TOKEN_PURPOSE
from accounts.models import ApiToken
from accounts.policy import needs_two_factor
from portal.digests import secret_digest

PASSWORD = "correct-horse-battery"  # what tests.conftest.make_user gives every user


class HttpsClient(Client):
    """The portal redirects plain HTTP to HTTPS (SECURE_SSL_REDIRECT, as in production), so
    the tests' browser speaks HTTPS, as a real one does."""

    def generic(
        self, method, path, data="", content_type="application/octet-stream", secure=True, **extra
    ):
        return super().generic(method, path, data, content_type, secure=True, **extra)


class HttpsAPIClient(APIClient):
    def generic(
        self, method, path, data="", content_type="application/octet-stream", secure=True, **extra
    ):
        return super().generic(method, path, data, content_type, secure=True, **extra)


def make_device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def code_for(device_or_key, *, offset_steps: int = 0) -> str:
    """The code an authenticator app shows now for this device (or hex key)."""
    key = (
        device_or_key.bin_key
        if isinstance(device_or_key, TOTPDevice)
        else bytes.fromhex(device_or_key)
    )
    totp = TOTP(key, step=30, t0=0, digits=6, drift=0)
    totp.time = time.time() + offset_steps * 30
    return f"{totp.token():06d}"


def wrong_code_for(device: TOTPDevice) -> str:
    # Not the code of this, the previous or the next step (all three are accepted).
    accepted = {code_for(device, offset_steps=step) for step in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in accepted)


def verified_login(client: Client, user, device: TOTPDevice) -> None:
    """A session that passed the password and the code, for tests about what comes after.
    The login flow itself is tested through the pages."""
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


def password_login(user) -> HttpsClient:
    """A browser logged in as ``user`` through the login page, with the password (the
    authentication backend and the session as a real login makes them)."""
    client = HttpsClient()
    response = client.post(
        reverse("accounts:login"), {"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 302, response.content
    return client


def statements_of_get(client: Client, path: str, fragment: str) -> tuple[int, list[str]]:
    """The status of ``GET path`` and the SQL statements it ran that contain ``fragment``."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    return response.status_code, [q["sql"] for q in queries if fragment in q["sql"]]


def sign_in(client: Client, user) -> Client:
    """A session as far as the portal lets ``user`` go: past the code too when the two-factor
    policy (``accounts.policy``) requires one, enrolling a device if the user has none."""
    if needs_two_factor(user):
        device = TOTPDevice.objects.devices_for_user(user, confirmed=True).first()
        verified_login(client, user, device or make_device(user))
    else:
        client.force_login(user)
    return client


def plain_static_storage(settings) -> None:
    """With DEBUG off the settings pick the manifest storage, whose manifest only exists after
    collectstatic; pages rendered in tests link to the unhashed files instead."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def api_token(user) -> str:
    """A new API token of ``user``: the secret (the database keeps only its digest)."""
    secret = ApiToken.new_secret()
    ApiToken.objects.create(
        user=user, digest=secret_digest(secret, purpose=TOKEN_PURPOSE), prefix=secret[:8]
    )
    return secret


_CSRF_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


def without_random_values(html: str, *tokens: str) -> str:
    """A page without its random values (its CSRF token, and ``tokens``: the link or invitation
    in its own address), which may spell anything, a patient's name included: what is left is
    what the page says."""
    for token in tokens:
        html = html.replace(token, "<token>")
    return _CSRF_VALUE.sub('name="csrfmiddlewaretoken" value=""', html)
