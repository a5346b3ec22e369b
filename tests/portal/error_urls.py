"""A URLconf for the error-page tests only: a page that crashes, with the portal's handlers."""

from django.urls import path
from django.views.generic import RedirectView


def explode(request):
    raise RuntimeError("kaboom in /srv/portal/secret_module.py with PATIENT_ID=P-0001")


urlpatterns = [
    path("", RedirectView.as_view(url="/explode/"), name="home"),
    path("explode/", explode),
    path("api/v1/explode/", explode),
]

handler404 = "portal.views.page_not_found"
handler500 = "portal.views.server_error"
