from django.urls import path

from studies.views import directory, download, folders, upload, viewer

app_name = "studies"

urlpatterns = [
    path("", directory.directory, name="directory"),
    path("search/", directory.search, name="search"),
    path("upload/", upload.upload_page, name="upload"),
    path("upload/files/", upload.upload_files, name="upload_files"),
    # Before the study paths: no study UID is a word.
    path("folders/new/", folders.new_folder, name="folder_new"),
    path("folders/rename/", folders.rename, name="folder_rename"),
    path("folders/move/", folders.move, name="folder_move"),
    path("folders/delete/", folders.delete, name="folder_delete"),
    path("folders/file/", folders.file, name="folder_file"),
    path("<str:study_uid>/", viewer.study, name="study"),
    path("<str:study_uid>/report/", viewer.save_report, name="report"),
    path("<str:study_uid>/download/", download.download_study, name="download"),
]
