"""The sender's pages of guest links, under /links/ (the recipient's are under /l/)."""

from django.urls import path

from guestlinks.views import sender

app_name = "guestlinks"

urlpatterns = [
    path("send/", sender.send_link_dialog, name="dialog"),
    path("study/<str:study_uid>/", sender.study_links, name="study_links"),
    path("<int:pk>/delete/", sender.delete, name="delete"),
]
