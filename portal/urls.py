from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from portal import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="studies:directory"), name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("jsi18n/<str:language>/", views.javascript_catalog, name="javascript_catalog"),
    path("accounts/", include("accounts.urls")),
    path("studies/", include("studies.urls")),
    path("dicomweb/", include("dicomweb.urls")),
    path("l/", include("guestlinks.urls_recipient")),
    path("links/", include("guestlinks.urls")),
    path("shares/", include("sharing.urls")),
    path("viewers/", include("viewers.urls")),
    path("outbox/", include("notifications.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("portal.api_urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file, so the page needs no inline script.
    path(
        "api/v1/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"
    ),
]

handler400 = "portal.views.bad_request"
handler403 = "portal.views.permission_denied"
handler404 = "portal.views.page_not_found"
handler500 = "portal.views.server_error"
