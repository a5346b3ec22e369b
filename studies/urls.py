from django.urls import path

from studies.views import directory, upload, viewer

app_name = "studies"

urlpatterns = [
    path("", directory.directory, name="directory"),
    path("search/", directory.search, name="search"),
    path("upload/", upload.upload_page, name="upload"),
    path("upload/files/", upload.upload_files, name="upload_files"),
    path("<str:study_uid>/", viewer.study, name="study"),
    path("<str:study_uid>/report/", viewer.save_report, name="report"),
    path("<str:study_uid>/download/", upload.download_study, name="download"),
]
