"""Fixtures for the guest-link stories: links made directly as rows with a known token (no
sender dialog involved), a recipient's browser, and the outbox run in this process.

``make_link(target, ...)`` returns ``(link, token)``: the token is derived from a fresh salt
exactly as ``guestlinks.tokens`` does for a real link, and only its digest is stored.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpRequest
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Role
from accounts.permissions import Perm
from guestlinks.models import GuestLink, TargetKind
from guestlinks.passwords import hash_link_password
from guestlinks.tokens import digest_for, new_salt, token_for
from notifications.models import Channel, Message
from portal.celery import app as celery_app
from studies.models import Folder, Instance, Study, Worklist
from studies.services.ingestion import ingest_files
from studies.synthetic import make_series, to_bytes
from tests.accounts.helpers import HttpsClient, plain_static_storage
from tests.conftest import make_user
from tests.factories import make_study

CT_UID = "1.2.826.0.1.3680043.8.498.7401"


@pytest.fixture
def make_link(db) -> Callable[..., tuple[GuestLink, str]]:
    """``make_link(study_or_worklist_or_folder, password="...", max_uses=3, ...)``.

    ``password`` is hashed as the sender's side hashes it; ``expires_in`` (a timedelta) sets
    ``expires_at`` from now; any other keyword is a GuestLink field."""

    def make(
        target: Study | Worklist | Folder,
        *,
        password: str | None = None,
        expires_in: timedelta | None = None,
        **fields,
    ) -> tuple[GuestLink, str]:
        salt = new_salt()
        token = token_for(salt)
        if isinstance(target, Study):
            kind, organization_id = TargetKind.STUDY, target.organization_id
            fields.setdefault("study", target)
        elif isinstance(target, Worklist):
            kind, organization_id = TargetKind.WORKLIST, target.organization_id
            fields.setdefault("worklist", target)
        elif isinstance(target, Folder):
            kind, organization_id = TargetKind.FOLDER, target.worklist.organization_id
            fields.setdefault("folder", target)
        else:
            raise TypeError(f"a guest link names a study, a worklist or a folder, not {target!r}")
        if password is not None:
            fields["password_hash"] = hash_link_password(password)
        if expires_in is not None:
            fields["expires_at"] = timezone.now() + expires_in
        fields.setdefault("organization_id", organization_id)
        link = GuestLink.objects.create(
            target_kind=kind, token_salt=salt, token_digest=digest_for(token), **fields
        )
        return link, token

    return make


@pytest.fixture
def study(org, location):
    """A CT of Jane Doe received at St. Elsewhere's Radiology location."""
    return make_study(org, location=location)


@pytest.fixture
def ct(org, location) -> Study:
    """A two-slice CT with real pixels (frames render), received at Radiology."""
    datasets = make_series(
        patient_name="Peeters^Anna",
        patient_id="PID-7401",
        birth_date="19610203",
        sex="F",
        study_uid=CT_UID,
        study_date="20240611",
        study_description="CT Abdomen",
        accession="ACC-7401",
        modality="CT",
        series_number=1,
        series_description="Axial 5mm",
        slices=2,
        rows=32,
        columns=32,
        body_part="ABDOMEN",
    )
    files = [(f"{i}.dcm", io.BytesIO(to_bytes(ds))) for i, ds in enumerate(datasets)]
    result = ingest_files(files=files, organization=org, location=location)
    assert not result.rejected, result.rejected
    return Study.objects.get(study_uid=CT_UID)


def frame_url(study: Study) -> str:
    """The first frame of the study's first image."""
    instance = (
        Instance.objects.filter(series__study=study, has_pixels=True)
        .select_related("series")
        .order_by("number", "pk")
        .first()
    )
    return reverse(
        "dicomweb:rendered_frame",
        args=[study.study_uid, instance.series.series_uid, instance.sop_instance_uid, 1],
    )


def service_request(user=None, *, address: str = "127.0.0.1") -> HttpRequest:
    """A POST to a link page as the services see it: a user (or anonymous), an address and a
    session of its own, for calling ``guestlinks.services.opening`` directly."""
    request = RequestFactory().post("/l/", REMOTE_ADDR=address)
    request.user = user if user is not None else AnonymousUser()
    request.session = SessionStore()
    return request


def link_path(token: str) -> str:
    return reverse("guest:link", args=[token])


@pytest.fixture
def guest(settings):
    """The recipient's browser: HTTPS, not logged in, pages linking to unhashed static files."""
    plain_static_storage(settings)
    return HttpsClient()


@pytest.fixture
def tasks_in_process(settings):
    """Celery tasks run in this process whatever the environment says about a broker (CI sets
    CELERY_BROKER_URL), so an on-commit publish delivers at once."""
    previous = celery_app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def sms_outbox(settings):
    """SMS go to the development outbox backend: delivered without a provider."""
    settings.SMS_BACKEND = "notifications.backends.OutboxSmsBackend"
    return settings


_SMS_CODE = re.compile(r"\b(\d{6})\b")


def sms_codes_sent(link: GuestLink) -> list[str]:
    """The codes texted for ``link``, oldest first, read from the outbox bodies (their only
    plain copy)."""
    bodies = Message.objects.filter(
        channel=Channel.SMS, template="sms_code", concerning_id=str(link.pk)
    ).order_by("pk")
    return [_SMS_CODE.search(message.body_text).group(1) for message in bodies]


def member(username, org, location, perms):
    """A member of ``org`` working from ``location`` whose role grants exactly ``perms``."""
    role = Role.objects.create(name=f"Role of {username}", permissions=[p.value for p in perms])
    user = make_user(username)
    membership = Membership.objects.create(user=user, organization=org, role=role)
    membership.locations.add(location)
    return user


@pytest.fixture
def viewer_only(org, location):
    """Sees the study and its links, may neither create nor delete links."""
    return member("vera", org, location, [Perm.VIEW_STUDIES, Perm.VIEW_LINKS])


@pytest.fixture
def no_links(org, location):
    """Sees the study, nothing about links."""
    return member("nils", org, location, [Perm.VIEW_STUDIES])
