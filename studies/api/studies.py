"""REST API: studies and worklists (API.md, "Studies").

Every queryset starts from ``studies.access``; a study the caller may not see answers 404 like
one that does not exist. Patient fields follow the caller's access: an anonymized study shows the
pseudonym, no birth date and no accession.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from django.conf import settings
from django.http import QueryDict
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiTokenAuthentication
from accounts.http import api_user
from accounts.models import ApiToken
from portal import decisions
from portal.http import MAX_ID
from studies.access import (
    access_ends,
    decision_principal,
    get_study_for,
    search_decision_key,
    visible_worklists,
)
from studies.anonymize import patient_display
from studies.models import Folder, Report, WorklistKind
from studies.pagination import InvalidCursor, Sort
from studies.selectors import SearchCriteria, StudyRow, search_page, study_rows, study_series
from studies.services.viewing import record_studies_listed, record_study_view

# --- Serializers (validate the query, shape the output, decide nothing) ------------------------


class StudyQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Patient name words (accent- and case-insensitive).",
    )
    patient_id = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Exact or prefix."
    )
    accession = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Exact."
    )
    modality = serializers.CharField(
        required=False, allow_blank=True, max_length=16, help_text="e.g. CT, MR."
    )
    date_from = serializers.DateField(required=False, allow_null=True)
    date_to = serializers.DateField(required=False, allow_null=True)
    worklist = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="One of your worklists."
    )
    folder = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="One of your folders."
    )
    sort = serializers.ChoiceField(
        help_text="Default -date (newest first).",
        allow_blank=True,
        required=False,
        choices=[
            "date",
            "-date",
            "name",
            "-name",
            "modality",
            "-modality",
            "description",
            "-description",
        ],
    )
    cursor = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="From `next`/`previous`."
    )

    def validate(self, attrs):
        start, end = attrs.get("date_from"), attrs.get("date_to")
        if start and end and start > end:
            raise ValidationError({"date_to": [_("The end date is before the start date.")]})
        return attrs


class StudySerializer(serializers.Serializer):
    study_uid = serializers.CharField()
    patient_name = serializers.CharField()
    patient_id = serializers.CharField()
    birth_date = serializers.DateField(allow_null=True)
    sex = serializers.CharField()
    anonymized = serializers.BooleanField()
    withheld = serializers.BooleanField(
        help_text="Held only through a share asking for an SMS code: no patient data shown."
    )
    study_date = serializers.DateField(allow_null=True)
    description = serializers.CharField()
    accession = serializers.CharField()
    modalities = serializers.ListField(child=serializers.CharField())
    series_count = serializers.IntegerField()
    instance_count = serializers.IntegerField()
    worklists = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Ids of the caller's worklists that hold the study.",
    )


class StudyListSerializer(serializers.Serializer):
    results = StudySerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class InstanceSerializer(serializers.Serializer):
    sop_instance_uid = serializers.CharField()
    number = serializers.IntegerField(allow_null=True)
    frames = serializers.IntegerField()
    has_pixels = serializers.BooleanField()


class SeriesSerializer(serializers.Serializer):
    series_uid = serializers.CharField()
    number = serializers.IntegerField(allow_null=True)
    modality = serializers.CharField()
    description = serializers.CharField()
    instances = InstanceSerializer(many=True)


class AccessSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=["images", "report_read", "report_write"])
    anonymized = serializers.BooleanField()
    can_share = serializers.BooleanField()
    until = serializers.DateTimeField(allow_null=True)


class ReportSerializer(serializers.Serializer):
    text = serializers.CharField()
    updated_at = serializers.DateTimeField()


class StudyDetailSerializer(StudySerializer):
    series = SeriesSerializer(many=True)
    access = AccessSerializer()
    report = ReportSerializer(
        allow_null=True, help_text="Null when the caller's access does not include the report."
    )


class FolderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    # The serializer's metaclass takes declared fields off the class, so this field leaves
    # Field.parent alone; djangorestframework-stubs sees it replace that attribute.
    parent = serializers.IntegerField(allow_null=True)  # type: ignore[assignment]


class WorklistSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=WorklistKind.values)
    name = serializers.CharField()
    share_code = serializers.CharField()
    folders = FolderSerializer(many=True)


def _study_fields(row: StudyRow) -> dict:
    study, patient = row.study, row.patient
    return {
        "study_uid": study.study_uid,
        "patient_name": patient.name,
        "patient_id": patient.patient_id,
        "birth_date": patient.birth_date,
        "sex": patient.sex,
        "anonymized": patient.anonymized,
        # Held through a share asking for an SMS code not entered in this session.
        "withheld": patient.withheld,
        "study_date": study.study_date,
        "description": study.description,
        "accession": row.accession,
        "modalities": row.modalities,
        "series_count": study.series_count,
        "instance_count": study.instance_count,
        "worklists": row.worklist_ids,
    }


@dataclass(frozen=True)
class _ListedPage:
    results: list[dict]
    next_cursor: str | None
    previous_cursor: str | None


def _listed_page(
    request: Request, criteria: SearchCriteria, sort: Sort, cursor: str | None
) -> _ListedPage:
    """One page of the search as the API answers it, remembered (``portal.decisions``) for
    this principal and these criteria, sort and cursor, with the session's grants and the
    language in the key, as QIDO-RS remembers its answers: every change to a study, an entry
    or anything else access depends on moves the generation on, and the first of the user's
    dated shares to end ends it. A client pages and searches the same lists again and again.
    Raises :class:`InvalidCursor` (never remembered)."""

    user = api_user(request)

    def compute() -> tuple[tuple[list[dict], str | None, str | None], datetime | None]:
        page = search_page(
            user,
            criteria,
            sort=sort,
            cursor=cursor,
            page_size=settings.DIRECTORY_PAGE_SIZE,
        )
        rows = study_rows(user, page.studies, request)
        # Plain values in the shared cache: an answer written by an older version of this code
        # still reads.
        results = [_study_fields(row) for row in rows]
        return (results, page.next_cursor, page.previous_cursor), access_ends(user)

    key = _listed_page_key(request, criteria, sort, cursor)
    results, next_cursor, previous_cursor = decisions.remember(key, compute)
    return _ListedPage(results, next_cursor, previous_cursor)


def _listed_page_key(
    request: Request,
    criteria: SearchCriteria,
    sort: Sort,
    cursor: str | None,
    principal: str | None = None,
) -> str:
    return search_decision_key(
        request, "studies", criteria, sort.param, cursor, get_language(), principal=principal
    )


@dataclass(frozen=True)
class _Search:
    criteria: SearchCriteria
    sort: Sort
    cursor: str | None


def _search_of(params: Mapping[str, Any]) -> _Search:
    """What a valid query asks for."""
    criteria = SearchCriteria(
        q=params.get("q", ""),
        patient_id=params.get("patient_id", ""),
        accession=params.get("accession", ""),
        modality=params.get("modality", ""),
        date_from=params.get("date_from"),
        date_to=params.get("date_to"),
        worklist_id=params.get("worklist"),
        folder_id=params.get("folder"),
    )
    return _Search(criteria, Sort.parse(params.get("sort")), params.get("cursor") or None)


def _valid_search(query_params: QueryDict) -> _Search | None:
    """What the query asks for, or None when it is not valid (:func:`_query_errors` says why)."""
    parameters = tuple(sorted((name, tuple(values)) for name, values in query_params.lists()))
    params = _valid_params(parameters)
    return None if params is None else _search_of(params)


# A client asks the same searches again and again (a worklist polled, a page read again), and
# validating a query builds the serializer's ten fields anew each time: a twentieth of a
# remembered search's time. Whether a query is valid, and its values, follow from its parameters
# alone, so each process keeps the latest queries' answers; a refused query's errors are found
# again each time, in the caller's language. What is kept (a searched name among it) stays in
# this process's memory: never in the shared cache, whose keys are digests.
@functools.lru_cache(maxsize=1024)
def _valid_params(
    parameters: tuple[tuple[str, tuple[str, ...]], ...],
) -> Mapping[str, Any] | None:
    query_params = QueryDict(mutable=True)
    for name, values in parameters:
        query_params.setlist(name, list(values))
    query = StudyQuerySerializer(data=query_params)
    # Read-only: every request with these parameters reads the same values.
    return MappingProxyType(dict(query.validated_data)) if query.is_valid() else None


def _query_errors(query_params: QueryDict) -> dict:
    query = StudyQuerySerializer(data=query_params)
    query.is_valid()
    return query.errors


# --- Views -------------------------------------------------------------------------------------

_ERROR = inline_serializer("Error", fields={"detail": serializers.CharField()})


class StudyListView(APIView):
    """Search the studies the caller may see, newest first, 50 per page."""

    def initial(self, request: Request, *args, **kwargs) -> None:
        # A client with an API token pages and searches again and again: its token's verdict
        # and the page, remembered for whom the token stood for last time, come back from the
        # cache in one round trip rather than one each.
        token_key = ApiTokenAuthentication().decision_key(request)
        if token_key is not None:
            decisions.ask_ahead_for_token(token_key, lambda principal: self._ahead(principal))
        super().initial(request, *args, **kwargs)
        if token_key is not None and isinstance(request.auth, ApiToken):
            decisions.note_stood_for(token_key, decision_principal(request))

    def _ahead(self, principal: str) -> list[str]:
        search = _valid_search(self.request.query_params)
        if search is None:
            return []
        return [
            _listed_page_key(self.request, search.criteria, search.sort, search.cursor, principal)
        ]

    @extend_schema(
        operation_id="studies_list",
        # The query serializer is the one statement of the parameters and their constraints.
        parameters=[StudyQuerySerializer],
        responses={200: StudyListSerializer, 400: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        search = _valid_search(request.query_params)
        if search is None:
            raise ValidationError(_query_errors(request.query_params))
        try:
            page = _listed_page(request, search.criteria, search.sort, search.cursor)
        except InvalidCursor as exc:
            raise ValidationError({"cursor": [_("Invalid or expired cursor.")]}) from exc
        record_studies_listed(
            request=request, via="api", keys=search.criteria.keys_used(), rows=len(page.results)
        )
        return Response(
            {
                "results": page.results,
                "next": self._page_url(request, page.next_cursor),
                "previous": self._page_url(request, page.previous_cursor),
            }
        )

    @staticmethod
    def _page_url(request: Request, cursor: str | None) -> str | None:
        if not cursor:
            return None
        query = request.query_params.copy()
        query["cursor"] = cursor
        return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


class StudyDetailView(APIView):
    """One study with its series and instances, and what the caller may do with it."""

    @extend_schema(
        operation_id="studies_retrieve",
        responses={200: StudyDetailSerializer, 404: _ERROR},
    )
    def get(self, request: Request, study_uid: str) -> Response:
        study, access = get_study_for(request, study_uid)
        record_study_view(request=request, study=study, access=access, mark_opened=False)
        row = StudyRow(
            study=study,
            access=access,
            patient=patient_display(study, anonymized=access.anonymized),
        )
        if request.user.is_authenticated:
            row.worklist_ids = study_rows(request.user, [study])[0].worklist_ids
        report = None
        if access.can_read_report:
            found = Report.objects.filter(study=study).first()
            if found is not None:
                report = {"text": found.text, "updated_at": found.updated_at}
        body = {
            **_study_fields(row),
            "series": [
                {
                    "series_uid": item.series.series_uid,
                    "number": item.series.number,
                    "modality": item.series.modality,
                    "description": item.series.description,
                    "instances": [
                        {
                            "sop_instance_uid": instance.sop_instance_uid,
                            "number": instance.number,
                            # A report or document has no frame to render.
                            "frames": instance.frames if instance.has_pixels else 0,
                            "has_pixels": instance.has_pixels,
                        }
                        for instance in item.instances
                    ],
                }
                # Images-only access lists no report, structured or not.
                for item in study_series(study, images_only=not access.can_read_report)
            ],
            "access": access.as_api(),
            "report": report,
        }
        return Response(body)


class WorklistListView(APIView):
    """The caller's worklists (location, group, personal) and their folders."""

    @extend_schema(operation_id="worklists_list", responses={200: WorklistSerializer(many=True)})
    def get(self, request: Request) -> Response:
        worklists = list(visible_worklists(api_user(request)).order_by("kind", "name", "pk"))
        folders: dict[int, list[dict]] = {w.pk: [] for w in worklists}
        for folder in Folder.objects.filter(worklist_id__in=folders).order_by("name", "pk"):
            folders[folder.worklist_id].append(
                {"id": folder.pk, "name": folder.name, "parent": folder.parent_id}
            )
        return Response(
            [
                {
                    "id": w.pk,
                    "kind": w.kind,
                    "name": w.name,
                    "share_code": w.share_code,
                    "folders": folders[w.pk],
                }
                for w in worklists
            ]
        )
