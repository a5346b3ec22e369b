from django.urls import path

from viewers import views

app_name = "viewers"

urlpatterns = [
    path("ohif/", views.open_in_ohif, name="open_in_ohif"),
    path("ohif/token/", views.refresh_ohif_token, name="refresh_ohif_token"),
]
