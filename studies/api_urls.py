from django.urls import path

from studies.api import folders as folders_api
from studies.api import studies as studies_api
from studies.api import upload as upload_api

urlpatterns = [
    path("studies/", studies_api.StudyListView.as_view(), name="api-studies"),
    path("studies/upload/", upload_api.UploadView.as_view(), name="api-upload"),
    path("studies/<str:study_uid>/", studies_api.StudyDetailView.as_view(), name="api-study"),
    path("worklists/", studies_api.WorklistListView.as_view(), name="api-worklists"),
    path(
        "worklists/<int:worklist_id>/folders/",
        folders_api.WorklistFoldersView.as_view(),
        name="api-worklist-folders",
    ),
    path(
        "worklists/<int:worklist_id>/file/",
        folders_api.WorklistFileStudiesView.as_view(),
        name="api-worklist-file",
    ),
    path("folders/<int:folder_id>/", folders_api.FolderDetailView.as_view(), name="api-folder"),
]
