"""REST API: a worklist's folders and filing studies in them (API.md, "Folders").

The same services as the directory's dialogs (``studies.services.folders``): a worklist or
folder the caller may not see answers 404; one the caller sees but may not organize answers 403
naming the permission the role lacks; a name the service refuses answers 400 with the reason.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import api_user
from portal.http import MAX_ID
from studies.access import visible_studies
from studies.api.studies import FolderSerializer
from studies.models import Folder
from studies.selectors import visible_folder, visible_worklist
from studies.services.folders import (
    NAME_MAX_LENGTH,
    UNCHANGED,
    FolderError,
    FolderPermissionDenied,
    change_folder,
    create_folder,
    delete_folder,
    file_studies,
)

MAX_STUDIES = 500


# The serializers' metaclass takes declared fields off the class, so a "parent" field leaves
# Field.parent alone; djangorestframework-stubs sees it replace that attribute.
class NewFolderSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX_LENGTH)
    parent = serializers.IntegerField(  # type: ignore[assignment]
        allow_null=True, required=False, min_value=1, max_value=MAX_ID
    )


class FolderChangeSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX_LENGTH, required=False)
    parent = serializers.IntegerField(  # type: ignore[assignment]
        allow_null=True, required=False, min_value=1, max_value=MAX_ID
    )


class FileStudiesSerializer(serializers.Serializer):
    studies = serializers.ListField(
        child=serializers.CharField(max_length=64), min_length=1, max_length=MAX_STUDIES
    )
    folder = serializers.IntegerField(allow_null=True, min_value=1, max_value=MAX_ID)


_DELETED = inline_serializer(
    "FolderDeleted",
    fields={
        "name": serializers.CharField(),
        "subfolders": serializers.IntegerField(),
        "studies_unfiled": serializers.IntegerField(),
    },
)
_FILED = inline_serializer("StudiesFiled", fields={"moved": serializers.IntegerField()})


def _folder_data(folder: Folder) -> dict:
    return {"id": folder.pk, "name": folder.name, "parent": folder.parent_id}


def _worklist(request: Request, worklist_id: int):
    worklist = visible_worklist(api_user(request), worklist_id)
    if worklist is None:
        raise NotFound("No such worklist.")
    return worklist


def _folder(request: Request, folder_id: int) -> Folder:
    folder = visible_folder(api_user(request), folder_id)
    if folder is None:
        raise NotFound("No such folder.")
    return folder


def _parent(
    request: Request, parent_id: int | None, worklist, field: str = "parent"
) -> Folder | None:
    if parent_id is None:
        return None
    parent = visible_folder(api_user(request), parent_id)
    if parent is None or parent.worklist_id != worklist.pk:
        raise ValidationError({field: ["No such folder in this worklist."]})
    return parent


def _call(service, **kwargs):
    """The service's refusals in the API's terms: 403 with the missing permission, 400 with
    the reason the user can act on."""
    try:
        return service(**kwargs)
    except FolderPermissionDenied as exc:
        raise PermissionDenied(exc.args[0]) from exc
    except FolderError as exc:
        raise ValidationError({"detail": str(exc)}) from exc


class WorklistFoldersView(APIView):
    """The folders of one of the caller's worklists; make one."""

    @extend_schema(
        operation_id="worklist_folders_list", responses={200: FolderSerializer(many=True)}
    )
    def get(self, request: Request, worklist_id: int) -> Response:
        worklist = _worklist(request, worklist_id)
        folders = Folder.objects.filter(worklist=worklist).order_by("name", "pk")
        return Response([_folder_data(folder) for folder in folders])

    @extend_schema(
        operation_id="worklist_folders_create",
        request=NewFolderSerializer,
        responses={201: FolderSerializer},
    )
    def post(self, request: Request, worklist_id: int) -> Response:
        worklist = _worklist(request, worklist_id)
        data = NewFolderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        folder = _call(
            create_folder,
            user=api_user(request),
            worklist=worklist,
            name=data.validated_data["name"],
            parent=_parent(request, data.validated_data.get("parent"), worklist),
            request=request,
        )
        return Response(_folder_data(folder), status=status.HTTP_201_CREATED)


class FolderDetailView(APIView):
    """Rename a folder, nest it in another (``parent``; null: the top level), or delete it
    (its studies stay in the worklist, outside any folder)."""

    @extend_schema(operation_id="folders_retrieve", responses={200: FolderSerializer})
    def get(self, request: Request, folder_id: int) -> Response:
        return Response(_folder_data(_folder(request, folder_id)))

    @extend_schema(
        operation_id="folders_update",
        request=FolderChangeSerializer,
        responses={200: FolderSerializer},
    )
    def patch(self, request: Request, folder_id: int) -> Response:
        folder = _folder(request, folder_id)
        data = FolderChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        parent = (
            _parent(request, changes["parent"], folder.worklist)
            if "parent" in changes
            else UNCHANGED
        )
        _call(
            change_folder,
            user=api_user(request),
            folder=folder,
            name=changes.get("name"),
            parent=parent,
            request=request,
        )
        return Response(_folder_data(folder))

    @extend_schema(operation_id="folders_destroy", responses={200: _DELETED})
    def delete(self, request: Request, folder_id: int) -> Response:
        folder = _folder(request, folder_id)
        summary = _call(delete_folder, user=api_user(request), folder=folder, request=request)
        return Response(
            {
                "name": summary.name,
                "subfolders": summary.subfolders,
                "studies_unfiled": summary.studies_unfiled,
            }
        )


class WorklistFileStudiesView(APIView):
    """File studies of a worklist in one of its folders (``folder``; null: out of any folder)."""

    @extend_schema(
        operation_id="worklist_file_studies",
        request=FileStudiesSerializer,
        responses={200: _FILED},
    )
    def post(self, request: Request, worklist_id: int) -> Response:
        worklist = _worklist(request, worklist_id)
        data = FileStudiesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        uids = list(dict.fromkeys(data.validated_data["studies"]))
        studies = list(visible_studies(api_user(request)).filter(study_uid__in=uids))
        if len(studies) != len(uids):
            raise NotFound("No such study.")
        folder_id = data.validated_data["folder"]
        folder = _parent(request, folder_id, worklist, "folder")
        moved = _call(
            file_studies,
            user=api_user(request),
            worklist=worklist,
            studies=studies,
            folder=folder,
            request=request,
        )
        return Response({"moved": moved})
