from django.urls import path

from studies.api import studies as studies_api
from studies.api import upload as upload_api

urlpatterns = [
    path("studies/", studies_api.StudyListView.as_view(), name="api-studies"),
    path("studies/upload/", upload_api.UploadView.as_view(), name="api-upload"),
    path("studies/<str:study_uid>/", studies_api.StudyDetailView.as_view(), name="api-study"),
    path("worklists/", studies_api.WorklistListView.as_view(), name="api-worklists"),
]
