"""``POST /api/v1/studies/upload/``: DICOM files in, for scripts and PACS gateways.

The same service as the browser upload (``studies.services.ingestion.ingest_files``): each file
is stored or rejected on its own, and the answer lists both.
"""

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.memberships import has_perm
from accounts.permissions import Perm
from studies.services.ingestion import ingest_files, resolve_upload_location


class CanUpload(BasePermission):
    message = gettext_lazy("Your account may not upload studies.")

    def has_permission(self, request, view) -> bool:
        return has_perm(request.user, Perm.UPLOAD_STUDIES)


_UploadResult = inline_serializer(
    name="UploadResult",
    fields={
        "stored": serializers.ListField(child=serializers.CharField()),
        "duplicates": serializers.ListField(child=serializers.CharField()),
        "rejected": serializers.ListField(
            child=inline_serializer(
                name="UploadRejection",
                fields={
                    "name": serializers.CharField(),
                    "reason": serializers.CharField(),
                    "code": serializers.CharField(),
                },
            )
        ),
        "duplicates_with_different_content": serializers.ListField(child=serializers.CharField()),
        "studies": serializers.ListField(child=serializers.CharField()),
        "files": serializers.ListField(
            child=inline_serializer(
                name="UploadFileOutcome",
                fields={
                    "name": serializers.CharField(),
                    "status": serializers.ChoiceField(["stored", "duplicate", "rejected"]),
                    "sop_instance_uid": serializers.CharField(),
                    "message": serializers.CharField(),
                },
            )
        ),
    },
)


class UploadView(APIView):
    """Store DICOM files sent as multipart field ``files`` (one or many).

    ``location`` (a location id) says where the studies arrive; it may be left out when the
    caller works from exactly one location. 201 when something was stored, 200 when every
    file was already stored, 400 when every file was rejected.
    """

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [IsAuthenticated, CanUpload]

    @extend_schema(
        operation_id="studies_upload",
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "location": {"type": "integer"},
                },
                "required": ["files"],
            }
        },
        responses={
            201: _UploadResult,
            200: _UploadResult,
            # Every file rejected (the upload result), or the location refused (field errors).
            400: {
                "anyOf": [
                    {"$ref": "#/components/schemas/UploadResult"},
                    {"$ref": "#/components/schemas/FieldErrors"},
                ]
            },
        },
        examples=[
            OpenApiExample(
                "One stored, one rejected",
                response_only=True,
                status_codes=["201"],
                value={
                    "stored": ["1.2.826.0.1.3680043.8.498.1.1"],
                    "duplicates": [],
                    "rejected": [
                        {
                            "name": "notes.txt",
                            "reason": "This is not a DICOM file (it has no DICOM file header).",
                            "code": "not_dicom",
                        }
                    ],
                },
            )
        ],
    )
    def post(self, request):
        location = resolve_upload_location(request.user, request.data.get("location"))
        files = request.FILES.getlist("files")
        if not files:
            return Response(
                {"files": [_("Attach at least one file in the multipart field 'files'.")]},
                status=400,
            )
        result = ingest_files(
            files=[(upload.name, upload) for upload in files],
            organization=location.organization,
            location=location,
            uploaded_by=request.user,
            request=request,
        )
        return Response(result.as_json(), status=result.status_code)
