"""The API's browsable documentation works offline and under the strict CSP."""

import re

import pytest
from django.urls import reverse

from tests.accounts.helpers import HttpsClient

pytestmark = pytest.mark.django_db


def test_api_docs_page_loads_its_assets_from_this_site_without_inline_script(alice):
    client = HttpsClient()
    client.force_login(alice)

    page = client.get(reverse("api-docs"))
    html = page.content.decode()

    assert page.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "//cdn" not in html and "jsdelivr" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script breaks the CSP"
    assert "<style" not in html

    script = client.get(reverse("api-docs") + "?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert reverse("api-schema") in script.content.decode()


def test_openapi_schema_describes_the_contract_paths(alice):
    client = HttpsClient()
    client.force_login(alice)

    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/auth/token/",
        "/api/v1/studies/",
        "/api/v1/studies/{study_uid}/",
        "/api/v1/studies/upload/",
        "/api/v1/worklists/",
        "/api/v1/audit/",
    ):
        assert path in paths, path
