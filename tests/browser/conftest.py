"""Playwright (sync API) against pytest-django's live server, in headless Chromium.

Playwright's sync API runs an event loop in the test's thread; Django refuses database access
from a thread with a running loop unless told it is safe, which it is here (one test thread).
The live server speaks plain HTTP on localhost, so the tests turn off what production needs
HTTPS for (the redirect and secure-only cookies).
"""

import contextlib
import io
import re

import pytest
from playwright.sync_api import Error as PlaywrightError

from studies.services.ingestion import ingest_files
from studies.synthetic import make_series, to_bytes


@pytest.fixture(autouse=True)
def _allow_orm_beside_playwrights_event_loop(monkeypatch):
    """Playwright's sync API keeps an event loop running in this thread, and Django refuses ORM
    calls from such a thread. Allowed for browser tests only: set process-wide it would leak
    into every later test and subprocess (check --deploy rightly refuses it)."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session", autouse=True)
def plain_http():
    """Session-wide, because the live server builds its middleware (which reads the HTTPS
    redirect setting) once, when it starts. Pages link to unhashed static files, which the live
    server serves itself (no collectstatic in tests)."""
    from django.conf import settings
    from django.test.utils import override_settings

    override = override_settings(
        SECURE_SSL_REDIRECT=False,
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        SECURE_HSTS_SECONDS=0,
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
    )
    override.enable()
    yield
    override.disable()


@pytest.fixture
def chromium(require_chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page_on(chromium, live_server):
    """A fresh browser context and page on the live server (clipboard allowed where the browser
    lets us), with console errors collected for the test to check."""
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1440, "height": 900}, locale="en-GB"
    )
    # A browser that does not know these permissions still copies through the fallback.
    with contextlib.suppress(PlaywrightError):
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.console_errors = []
    page.on(
        "console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None
    )
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session", autouse=True)
def _end_live_server_connections(django_db_setup, django_db_blocker):
    """The live server is session-scoped and may be torn down after the test database: on
    PostgreSQL its request threads' connections would then keep the database from being
    dropped. End them first (set up after django_db_setup, so torn down before it)."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def log_in(page, username: str = "alice") -> None:
    """Log ``username`` in through the login page (every test user has the same password) and
    wait for the directory."""
    page.goto("/accounts/login/?next=/studies/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/studies/$"))


def log_in_verified(page, user, live_url: str) -> None:
    """Give ``page``'s browser a session of ``user`` that passed the password and the one-time
    code (the administration requires both), made by Django's test client: a browser cannot
    read the code from an authenticator app."""
    from django.conf import settings
    from django.test import Client

    from tests.accounts.helpers import make_device, verified_login

    client = Client()
    verified_login(client, user, make_device(user))
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_url,
            }
        ]
    )


def ingest_ct_study(
    org,
    location,
    *,
    study_uid: str,
    patient_id: str,
    accession: str,
    slices: int,
    size: int = 64,
) -> str:
    """A real CT study (Hans Müller's chest), ingested as an upload would be: small slices
    unless ``size`` asks for more."""
    datasets = make_series(
        patient_name="Müller^Hans",
        patient_id=patient_id,
        birth_date="19580412",
        sex="M",
        study_uid=study_uid,
        study_date="20240517",
        study_description="CT Thorax",
        accession=accession,
        modality="CT",
        series_number=1,
        series_description="Axial 5mm",
        slices=slices,
        rows=size,
        columns=size,
        body_part="CHEST",
    )
    result = ingest_files(
        files=[(f"{i}.dcm", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(datasets)],
        organization=org,
        location=location,
    )
    assert len(result.stored) == slices
    return study_uid
