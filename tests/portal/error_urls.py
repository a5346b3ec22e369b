"""A URLconf for the error-page tests only: a page that crashes, with the portal's handlers."""

from django.urls import path
from django.views.generic import RedirectView

from portal.views import javascript_catalog


def explode(request):
    raise RuntimeError("kaboom in /srv/portal/secret_module.py with PATIENT_ID=P-0001")


urlpatterns = [
    path("", RedirectView.as_view(url="/explode/"), name="home"),
    path("explode/", explode),
    path("api/v1/explode/", explode),
    # Every page names the scripts' texts.
    path("jsi18n/<str:language>/", javascript_catalog, name="javascript_catalog"),
]

handler404 = "portal.views.page_not_found"
handler500 = "portal.views.server_error"
