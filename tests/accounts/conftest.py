import pytest

from tests.accounts.helpers import HttpsAPIClient, HttpsClient, make_device, plain_static_storage


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    plain_static_storage(settings)


@pytest.fixture
def client():
    return HttpsClient()


@pytest.fixture
def api_client():
    return HttpsAPIClient()


@pytest.fixture
def alice_device(alice):
    return make_device(alice)


@pytest.fixture
def dana_device(dana):
    return make_device(dana)
