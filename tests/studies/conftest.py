"""What the studies tests share: a browser that speaks HTTPS, as the portal asks of every one."""

from __future__ import annotations

import pytest

from tests.accounts.helpers import HttpsClient, plain_static_storage


@pytest.fixture
def client(settings) -> HttpsClient:
    """An HTTPS test client for pages rendered with the unhashed static files (in place of
    pytest-django's plain one)."""
    plain_static_storage(settings)
    return HttpsClient()
