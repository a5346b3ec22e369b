from django.urls import path

from studies.views import frames

app_name = "dicomweb"

urlpatterns = [
    path(
        "studies/<str:study_uid>/series/<str:series_uid>/instances/<str:instance_uid>/frames/"
        "<int:frame>/rendered",
        frames.rendered_frame,
        name="rendered_frame",
    ),
    path(
        "studies/<str:study_uid>/series/<str:series_uid>/thumbnail",
        frames.series_thumbnail,
        name="series_thumbnail",
    ),
]
