from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api_urls")),
    path("", include("studies.api_urls")),
    path("", include("audit.api_urls")),
    path("", include("guestlinks.api_urls")),
    path("", include("sharing.api_urls")),
]
