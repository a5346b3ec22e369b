"""Guest links in the REST API (API.md). ``studies/<uid>/guest-links/`` does not collide with
the studies app's ``studies/<uid>/``: a ``str`` converter never matches a slash."""

from django.urls import path

from guestlinks import api

urlpatterns = [
    path("guest-links/", api.GuestLinkCreateView.as_view(), name="api-guest-links"),
    path("guest-links/<int:pk>/", api.GuestLinkDetailView.as_view(), name="api-guest-link"),
    path(
        "studies/<str:study_uid>/guest-links/",
        api.StudyGuestLinksView.as_view(),
        name="api-study-guest-links",
    ),
]
