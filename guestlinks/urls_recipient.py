"""The recipient's addresses, under /l/. Every token -- a link's, and a confirmation's in
``/l/<token>/confirm`` -- follows /l/ directly, where portal.logging masks it in every log line
and referrer; ``studies/`` comes first so that it is never read as a token."""

from django.urls import path

from guestlinks.views import recipient

app_name = "guest"

urlpatterns = [
    path("studies/", recipient.granted_studies, name="studies"),
    path("<str:token>/confirm", recipient.confirm, name="confirm"),
    path("<str:token>", recipient.link_page, name="link"),
]
