import pytest

from tests.accounts.helpers import HttpsClient, plain_static_storage


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


@pytest.fixture
def client():
    return HttpsClient()
