"""QIDO-RS: searching studies, series and instances (PS3.18 10.6; matching as PS3.4 C.2.2).

Routes: ``/studies``, ``/series``, ``/instances``, ``/studies/{study}/series``,
``/studies/{study}/instances`` and ``/studies/{study}/series/{series}/instances``. The answer is
a DICOM JSON array (:mod:`dicomweb.dicomjson`), ``[]`` when nothing matches: 200 rather than 204,
as PS3.18 now says (CP-2473) and every client reads. A search under a study or series the caller
may not see answers ``[]`` too, exactly like one under a UID that does not exist.

Query keys are keywords or tags (``PatientName``, ``00100010``), values already percent-decoded:

- single value (exact; case-sensitive, as PS3.4 asks, except person names), ``*`` and ``?``
  wildcards, and ``*`` alone or an empty value for universal matching (the attribute is returned);
- lists: ``\\``-separated, or repeated keys; UIDs, codes and numbers also comma-separated;
- date and time ranges: ``20240101-20240131``, ``-20240131``, ``20240101-``, partial times;
- person names case- and accent-insensitively against the stored normalized name
  (``studies.dicom_header.normalize_name``); with ``fuzzymatching=true`` each word of the query
  may match the start of any word of the name, in any order;
- ``limit`` (at most ``DICOMWEB_QIDO_MAX_LIMIT``) and ``offset``; when more results exist than
  were returned the answer carries PS3.18's ``Warning: 299`` header;
- ``includefield`` (keywords, tags or ``all``; repeated or comma-separated).

A key the portal does not know, or cannot match on, and a malformed value are 400 naming the key.

Who sees what. Every search is answered by the database from ``dicomweb.scope.studies_for``
(the directory's own visibility, with the session's grants), narrowed by conditions that say in
SQL what ``studies.access`` decides per study (``studies.selectors.access_conditions``), so that
``limit`` and ``offset`` count only what may be listed:

- a study held only through a share asking for an SMS code is absent until the code was entered
  in this session;
- a search on the patient's identity (name, ID, birth date, sex, accession, referring physician)
  matches only studies the caller sees identified (the directory's rule): an anonymized study
  shows its pseudonym, and no search by the real name finds it; a search by the pseudonymous
  PatientID it shows finds it (a viewer asking for "this patient's other studies");
- where the access does not read reports (images only, anonymized), objects without pixel data
  (structured reports, PDFs) are neither listed nor counted.

The page's studies those conditions do not show plainly (identified, with reports) are then
shown as ``studies.access`` answers for them, all at once, as the directory does (``study_rows``).

Each request is one "Query" audit event, naming the keys used, never their values; the number of
SQL queries does not grow with the number of results.
"""

from __future__ import annotations

import json
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import IntEnum, StrEnum
from functools import cached_property, reduce
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, Exists, F, Lookup, OuterRef, Q, QuerySet
from django.db.models.functions import Lower
from django.db.models.sql.compiler import SQLCompiler
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.utils import timezone

from dicomweb import dicomjson
from dicomweb.audit import record_query
from dicomweb.http import (
    DICOM_JSON,
    DecisionsAhead,
    DicomwebError,
    bad_request,
    dicomweb_view,
)
from dicomweb.multipart import media_type_matches, parse_accept
from dicomweb.scope import accesses_for, studies_for
from portal import decisions
from studies.access import StudyAccess, access_ends, granted_study_ids, search_decision_key
from studies.anonymize import pseudonym
from studies.dicom_header import normalize_name
from studies.models import AccessLevel, Instance, Series, Study
from studies.selectors import access_conditions

# --- Attributes ---------------------------------------------------------------------------------


class Level(IntEnum):
    STUDY = 0
    SERIES = 1
    INSTANCE = 2

    @property
    def label(self) -> str:
        return ("studies", "series", "instances")[self]


class Match(StrEnum):
    """How a query key is matched (an attribute without one is returned, never matched)."""

    UID = "uid"  # UID list matching
    TEXT = "text"  # single value or wildcard, case-sensitive
    NAME = "name"  # person name against the stored normalized name
    WORDS = "words"  # person name stored as "Given Family": word by word
    DATE = "date"
    TIME = "time"
    NUMBER = "number"
    MODALITIES = "modalities"  # any series of the study
    UNSTORED = "unstored"  # kept by no study here: only universal matching matches


@dataclass(frozen=True)
class Attribute:
    keyword: str
    level: Level | None  # None: at every level (its value is the queried level's)
    match: Match | None = None
    field: str = ""  # on the level's model
    identifying: bool = False  # names the patient or the people around them
    default: bool = True  # returned without includefield (PS3.18 table 10.6.3-3 and following)

    @property
    def tag(self) -> int:
        return _TAGS[self.keyword]


ATTRIBUTES: list[Attribute] = [
    Attribute("SpecificCharacterSet", None),
    Attribute("InstanceAvailability", None),
    Attribute("RetrieveURL", None),
    Attribute("StudyInstanceUID", Level.STUDY, Match.UID, "study_uid"),
    Attribute("StudyDate", Level.STUDY, Match.DATE, "study_date"),
    Attribute("StudyTime", Level.STUDY, Match.TIME, "study_time"),
    Attribute("AccessionNumber", Level.STUDY, Match.TEXT, "accession", identifying=True),
    Attribute("ModalitiesInStudy", Level.STUDY, Match.MODALITIES),
    Attribute(
        "ReferringPhysicianName",
        Level.STUDY,
        Match.WORDS,
        "referring_physician",
        identifying=True,
    ),
    Attribute("PatientName", Level.STUDY, Match.NAME, "patient_sort_name", identifying=True),
    Attribute("PatientID", Level.STUDY, Match.TEXT, "patient__patient_id", identifying=True),
    Attribute("PatientBirthDate", Level.STUDY, Match.DATE, "patient__birth_date", identifying=True),
    Attribute("PatientSex", Level.STUDY, Match.TEXT, "patient__sex", identifying=True),
    Attribute("StudyID", Level.STUDY, Match.UNSTORED, identifying=True),
    Attribute("StudyDescription", Level.STUDY, Match.TEXT, "description"),
    Attribute("NumberOfStudyRelatedSeries", Level.STUDY),
    Attribute("NumberOfStudyRelatedInstances", Level.STUDY),
    Attribute("SeriesInstanceUID", Level.SERIES, Match.UID, "series_uid"),
    Attribute("Modality", Level.SERIES, Match.TEXT, "modality"),
    Attribute("SeriesNumber", Level.SERIES, Match.NUMBER, "number"),
    Attribute("SeriesDescription", Level.SERIES, Match.TEXT, "description"),
    Attribute("BodyPartExamined", Level.SERIES, Match.TEXT, "body_part", default=False),
    Attribute("NumberOfSeriesRelatedInstances", Level.SERIES),
    Attribute("SOPClassUID", Level.INSTANCE, Match.UID, "sop_class_uid"),
    Attribute("SOPInstanceUID", Level.INSTANCE, Match.UID, "sop_instance_uid"),
    Attribute("InstanceNumber", Level.INSTANCE, Match.NUMBER, "number"),
    Attribute("Rows", Level.INSTANCE, Match.NUMBER, "rows"),
    Attribute("Columns", Level.INSTANCE, Match.NUMBER, "columns"),
    Attribute("NumberOfFrames", Level.INSTANCE, Match.NUMBER, "frames"),
]


def _known_tag(keyword: str) -> int:
    tag = dicomjson.parse_attribute_id(keyword)
    if tag is None:
        raise ValueError(f"{keyword} in ATTRIBUTES is not a keyword of the DICOM dictionary")
    return tag


_TAGS = {a.keyword: _known_tag(a.keyword) for a in ATTRIBUTES}
_VRS = {keyword: dicomjson.vr_of(tag) for keyword, tag in _TAGS.items()}
_KEYS = {keyword: dicomjson.tag_key(tag) for keyword, tag in _TAGS.items()}
BY_TAG = {a.tag: a for a in ATTRIBUTES}
BY_KEYWORD = {a.keyword: a for a in ATTRIBUTES}

# A study's identifiers returned with every series and instance, so that results can be tied
# together whatever includefield says.
_ALWAYS_BELOW = {
    Level.SERIES: ("StudyInstanceUID",),
    Level.INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID"),
}

_PARAMETERS = frozenset({"limit", "offset", "fuzzymatching", "includefield", "accept"})
_ACCEPTABLE = (DICOM_JSON, "application/json")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DATE = re.compile(r"[0-9]{8}")
_TIME = re.compile(r"([0-9]{2})([0-9]{2})?([0-9]{2})?(?:\.([0-9]{1,6}))?")
_NUMBER = re.compile(r"[+-]?[0-9]{1,9}")
# A value longer than any DICOM string attribute, or with more wildcards than a search needs,
# is refused rather than handed to the database's pattern matcher.
_MAX_VALUE_LENGTH = 200
_MAX_WILDCARDS = 16
# What a study the scope shows plainly is shown with: identified, with its reports.
_PLAIN = StudyAccess(level=AccessLevel.REPORT_READ)
_WARNING_TEXT = (
    '"The number of results exceeded the maximum supported by the server. '
    'Additional results can be requested."'
)


# --- Wildcard matching in the database ----------------------------------------------------------


# Lookup is generic in django-stubs only; Django's class cannot be subscripted.
class DicomWildcard(Lookup):  # type: ignore[type-arg]
    """``field`` matches a DICOM wildcard pattern (``*`` any run, ``?`` one character),
    case-sensitively on every database: PostgreSQL's LIKE, SQLite's GLOB (its LIKE ignores
    case). Both match without backtracking blow-ups, unlike a regular expression."""

    lookup_name = "dicom_wildcard"

    def __init__(self, lhs: F | Lower, pattern: str):
        super().__init__(lhs, pattern)
        self.pattern = pattern

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[str | int]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        escaped = re.sub(r"([\\%_])", r"\\\1", self.pattern)
        pattern = escaped.replace("*", "%").replace("?", "_")
        return f"{lhs} LIKE %s", [*lhs_params, pattern]

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[str | int]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} GLOB %s", [*lhs_params, self.pattern.replace("[", "[[]")]


def _pattern_condition(field_name: str, pattern: str) -> Q:
    if "*" not in pattern and "?" not in pattern:
        return Q(**{field_name: pattern})
    return Q(DicomWildcard(F(field_name), pattern))


# --- Reading the query --------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """One matching key. ``condition`` is on the attribute level's model; None is universal
    matching (the attribute is only returned)."""

    attribute: Attribute
    condition: Q | None
    # The values asked for, as given (for matching a pseudonym, which no column holds).
    values: tuple[str, ...] = ()

    @property
    def narrows_identity(self) -> bool:
        return self.attribute.identifying and self.condition is not None


@dataclass
class Query:
    level: Level
    filters: list[Filter] = field(default_factory=list)
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    limit: int = 0
    offset: int = 0
    study_uid: str | None = None
    series_uid: str | None = None

    def filters_at(self, level: Level) -> list[Filter]:
        return [f for f in self.filters if f.attribute.level == level]

    @property
    def audit_keys(self) -> list[str]:
        keys = {f.attribute.keyword for f in self.filters}
        if self.study_uid is not None:
            keys.add("StudyInstanceUID")
        if self.series_uid is not None:
            keys.add("SeriesInstanceUID")
        return sorted(keys)


def _invalid(key: str, reason: str) -> DicomwebError:
    return bad_request(f"Query key {key}: {reason}")


def parse_query(
    params: QueryDict, level: Level, *, study_uid: str | None, series_uid: str | None
) -> Query:
    """The search a query string asks for, or a 400 naming the key at fault."""
    query = Query(level=level, study_uid=study_uid, series_uid=series_uid)
    fuzzy = _boolean("fuzzymatching", params.getlist("fuzzymatching"))
    max_limit = settings.DICOMWEB_QIDO_MAX_LIMIT
    query.limit = min(_count("limit", params.getlist("limit"), minimum=1) or max_limit, max_limit)
    query.offset = _count("offset", params.getlist("offset"), minimum=0) or 0
    for raw in params.getlist("includefield"):
        for token in (piece.strip() for piece in raw.split(",")):
            _include(query, token)
    for key, values in params.lists():
        if not key or key in _PARAMETERS:
            continue  # an empty key is what "?&includefield=..." gives (Weasis)
        attribute = _attribute_for(key, level)
        condition = _condition(key, attribute, values, fuzzy=fuzzy)
        query.filters.append(Filter(attribute, condition, tuple(v.strip() for v in values)))
    return query


def _boolean(key: str, values: list[str]) -> bool:
    if not values:
        return False
    value = values[-1].strip().lower()
    if value not in ("true", "false"):
        raise _invalid(key, "expected true or false.")
    return value == "true"


def _count(key: str, values: list[str], *, minimum: int) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise _invalid(key, "given more than once.")
    value = values[0].strip()
    if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) < minimum:
        raise _invalid(key, f"expected a whole number from {minimum} to 999999999.")
    return int(value)


def _include(query: Query, token: str) -> None:
    if not token:
        return
    if token.lower() == "all":
        query.include_all = True
        return
    tags = _tag_path(token)
    if tags is None:
        raise _invalid(
            "includefield", f"{token} is neither a DICOM keyword (StudyDate) nor a tag (00080020)."
        )
    attribute = BY_TAG.get(tags[0]) if len(tags) == 1 else None
    # Attributes the portal does not hold (or below the searched level, like OHIF's Modality in
    # a study search) are simply not returned, as PS3.18 allows.
    if attribute is not None and (attribute.level is None or attribute.level <= query.level):
        query.include.add(attribute.keyword)


def _tag_path(text: str) -> list[int] | None:
    """The tags of a dotted attribute path (``ReferencedSeriesSequence.00081155``), or None when
    a part is neither a DICOM keyword nor a tag."""
    tags = [dicomjson.parse_attribute_id(part) for part in text.split(".")]
    known = [tag for tag in tags if tag is not None]
    return known if len(known) == len(tags) else None


def _attribute_for(key: str, level: Level) -> Attribute:
    tags = _tag_path(key)
    if tags is None:
        raise bad_request(
            f"Unknown query key {key}: use a DICOM keyword (PatientName) or tag (00100010), "
            "or limit, offset, fuzzymatching, includefield."
        )
    attribute = BY_TAG.get(tags[0]) if len(tags) == 1 else None
    if attribute is None:
        raise _invalid(
            key, f"{dicomjson.keyword_of(tags[0])} is not an attribute QIDO-RS here can match on."
        )
    if attribute.level is not None and attribute.level > level:
        if attribute.keyword == "Modality" and level == Level.STUDY:
            # Clients ask a study search for the series' modality: the study has a series of it.
            return BY_KEYWORD["ModalitiesInStudy"]
        raise _invalid(
            key,
            f"{attribute.keyword} belongs to {attribute.level.label}: search "
            f"{attribute.level.label} for it.",
        )
    return attribute


def _condition(key: str, attribute: Attribute, values: list[str], *, fuzzy: bool) -> Q | None:
    if attribute.match is None:
        if any(value.strip() for value in values):
            raise _invalid(
                key, f"{attribute.keyword} is returned, not matched: ask for it with includefield."
            )
        return None
    values = [value.strip() for value in values]
    if all(value in ("", "*") for value in values):
        return None  # universal matching
    if attribute.match in (Match.DATE, Match.TIME):
        if len(values) > 1 or "\\" in values[0]:
            raise _invalid(key, "takes one value or one range, not a list.")
        parse = _date_range if attribute.match == Match.DATE else _time_range
        low, high = parse(key, values[0])
        if low is not None and high is not None:
            return Q(**{f"{attribute.field}__range": (low, high)})
        if low is not None:
            return Q(**{f"{attribute.field}__gte": low})
        return Q(**{f"{attribute.field}__lte": high})
    separators = (
        r"[\\,]" if attribute.match in (Match.UID, Match.NUMBER, Match.MODALITIES) else r"\\"
    )
    items = [item.strip() for value in values for item in re.split(separators, value)]
    items = [item for item in items if item]
    if "*" in items:
        return None
    if attribute.match == Match.UNSTORED:
        # No study here keeps it, and an empty value matches no key value.
        return Q(pk__in=[])
    condition = Q()
    for item in items:
        condition |= _item_condition(key, attribute, item, fuzzy=fuzzy)
    return condition


def _item_condition(key: str, attribute: Attribute, item: str, *, fuzzy: bool) -> Q:
    if len(item) > _MAX_VALUE_LENGTH or item.count("*") > _MAX_WILDCARDS:
        raise _invalid(
            key,
            f"a value is longer than {_MAX_VALUE_LENGTH} characters or holds "
            f"more than {_MAX_WILDCARDS} wildcards.",
        )
    match attribute.match:
        case Match.UID:
            if len(item) > 64 or not _UID.fullmatch(item):
                raise _invalid(key, "expected UIDs (digits and dots), separated by \\ or commas.")
            return Q(**{attribute.field: item})
        case Match.NUMBER:
            if not _NUMBER.fullmatch(item):
                raise _invalid(key, "expected whole numbers.")
            return Q(**{attribute.field: int(item)})
        case Match.TEXT:
            return _pattern_condition(attribute.field, item)
        case Match.MODALITIES:
            # A condition on Series: the study matches through any series it may list.
            return _pattern_condition("modality", item)
        case Match.NAME if not fuzzy:
            # As the stored names are kept: normalize_name's folding (case, accents, ^ as a
            # space), wildcards kept.
            return _pattern_condition(attribute.field, normalize_name(item))
        case _:  # a person name, word by word
            name: F | Lower
            if attribute.match == Match.NAME:
                name, words = F(attribute.field), normalize_name(item).split()
            else:
                # Stored as written ("Paul Martin"), so folded for case only.
                name, words = Lower(attribute.field), item.replace("^", " ").lower().split()
            condition = Q()
            for word in words:
                # The word starts the name or one of its words.
                condition &= Q(DicomWildcard(name, f"{word}*")) | Q(
                    DicomWildcard(name, f"* {word}*")
                )
            return condition


def _date_range(key: str, text: str) -> tuple[date | None, date | None]:
    low_text, dash, high_text = text.partition("-")
    bounds: list[date | None] = []
    for part in (low_text, high_text) if dash else (text, text):
        if not part:
            bounds.append(None)
            continue
        try:
            if not _DATE.fullmatch(part):
                raise ValueError(part)
            bounds.append(date(int(part[:4]), int(part[4:6]), int(part[6:])))
        except ValueError:
            raise _invalid(
                key, "expected a date YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end open)."
            ) from None
    return _ordered(key, bounds[0], bounds[1])


def _time_range(key: str, text: str) -> tuple[time | None, time | None]:
    low_text, dash, high_text = text.partition("-")
    parts = (low_text, high_text) if dash else (text, text)
    low = _time_bound(key, parts[0], upper=False) if parts[0] else None
    high = _time_bound(key, parts[1], upper=True) if parts[1] else None
    return _ordered(key, low, high)


def _time_bound(key: str, text: str, *, upper: bool) -> time:
    """A partial time as the start (or end) of the period it names: ``10`` is 10:00:00 to
    10:59:59.999999."""
    found = _TIME.fullmatch(text)
    if found is None:
        raise _invalid(key, "expected a time HHMMSS.FFFFFF (HH, HHMM... allowed) or a range.")
    hours, minutes, seconds, fraction = found.groups()
    fill = 59 if upper else 0
    try:
        return time(
            int(hours),
            int(minutes) if minutes else fill,
            int(seconds) if seconds else fill,
            int(fraction.ljust(6, "9" if upper else "0")) if fraction else (999999 if upper else 0),
        )
    except ValueError:
        raise _invalid(
            key, "expected a time HHMMSS.FFFFFF (HH, HHMM... allowed) or a range."
        ) from None


# The two ends of a date or time range.
Bound = TypeVar("Bound", date, time)


def _ordered(key: str, low: Bound | None, high: Bound | None) -> tuple[Bound | None, Bound | None]:
    if low is None and high is None:
        raise _invalid(key, "a range needs at least one end.")
    if low is not None and high is not None and low > high:
        raise _invalid(key, "the range ends before it starts.")
    return low, high


# --- Who may see what, in SQL -------------------------------------------------------------------


@dataclass
class Scope:
    """The studies this request may list, and when the extra conditions apply (None: to none):
    ``identified``, the studies a search on identity may match; ``reports``, the studies whose
    objects without pixel data may be listed. Studies satisfying both are shown as they are;
    only the others need the authority's own answer."""

    studies: QuerySet[Study]
    identified: Q | None
    reports: Q | None

    @property
    def plain(self) -> Q | None:
        conditions = [c for c in (self.identified, self.reports) if c is not None]
        return reduce(operator.and_, conditions) if conditions else None


def scope_for(request: HttpRequest) -> Scope:
    conditions = access_conditions(request.user)
    # Guest-link grants are never anonymized and read the report.
    granted = granted_study_ids(request)
    studies = studies_for(request)
    readable = set(granted)
    if conditions.opens is not None:
        # A share asking for an SMS code opens only in the session where the code was entered;
        # the authority knows which, for the few studies held through nothing else.
        held = list(studies.exclude(conditions.opens).exclude(pk__in=granted))
        opened = {pk: a for pk, a in accesses_for(request, held).items() if a is not None}
        readable |= {pk for pk, access in opened.items() if access.can_read_report}
        studies = studies.filter(conditions.opens | Q(pk__in=granted | set(opened)))
    identified = conditions.identified
    if identified is not None:
        identified |= Q(pk__in=granted)
    reports = conditions.reports
    if reports is not None:
        reports |= Q(pk__in=readable)
    return Scope(studies=studies, identified=identified, reports=reports)


def _has_pixels(instance_ref: str) -> Exists:
    return Exists(Instance.objects.filter(**{instance_ref: OuterRef("pk")}, has_pixels=True))


def _known_by_pseudonym(scope: Scope, query: Query) -> set[int]:
    """The studies this caller sees anonymized whose pseudonym is what the search's identity
    keys ask for: a viewer asks for "the patient's other studies" by the PatientID it was
    shown (OHIF does), and finds that study. Only an exact PatientID (and nothing else about
    the patient) can name a pseudonym; asking by it tells the caller nothing it was not shown."""
    identity = [f for f in query.filters if f.narrows_identity]
    if scope.identified is None or not identity:
        return set()
    if any(f.attribute.keyword != "PatientID" for f in identity):
        return set()
    wanted = {item for f in identity for value in f.values for item in value.split("\\")}
    if not wanted or any("*" in item or "?" in item for item in wanted):
        return set()
    candidates = scope.studies.exclude(scope.identified)
    if query.study_uid is not None:
        candidates = candidates.filter(study_uid=query.study_uid)
    return {
        pk
        for pk, study_uid in candidates.values_list("pk", "study_uid")
        if pseudonym(Study(study_uid=study_uid)).patient_id in wanted
    }


def matching_studies(scope: Scope, query: Query) -> QuerySet[Study]:
    studies = scope.studies
    if query.study_uid is not None:
        studies = studies.filter(study_uid=query.study_uid)
    by_pseudonym = Q(pk__in=_known_by_pseudonym(scope, query))
    for matching in query.filters_at(Level.STUDY):
        if matching.condition is None:
            continue
        if matching.narrows_identity:
            studies = studies.filter(matching.condition | by_pseudonym)
            continue
        if matching.attribute.match == Match.MODALITIES:
            series = Series.objects.filter(matching.condition, study=OuterRef("pk"))
            if scope.reports is None:
                studies = studies.filter(Exists(series))
            else:
                # Without the reports, a series without images is not there to match.
                studies = studies.filter(
                    Exists(series.filter(_has_pixels("series"))) | (scope.reports & Exists(series))
                )
        else:
            studies = studies.filter(matching.condition)
    if scope.identified is not None and any(f.narrows_identity for f in query.filters):
        # The match itself would tell who an anonymized study is.
        studies = studies.filter(scope.identified | by_pseudonym)
    return studies


def matching_series(scope: Scope, query: Query, *, listed: bool) -> QuerySet[Series]:
    """The series of the matching studies that match; ``listed``: the series themselves are the
    answer, so those holding nothing the access may list are left out."""
    series = Series.objects.filter(study__in=matching_studies(scope, query).values("pk"))
    if query.series_uid is not None:
        series = series.filter(series_uid=query.series_uid)
    for matching in query.filters_at(Level.SERIES):
        if matching.condition is not None:
            series = series.filter(matching.condition)
    if listed and scope.reports is not None:
        series = series.filter(_reports_readable("study", scope) | _has_pixels("series"))
    return series


def matching_instances(scope: Scope, query: Query) -> QuerySet[Instance]:
    instances = Instance.objects.filter(
        series__in=matching_series(scope, query, listed=False).values("pk")
    )
    for matching in query.filters_at(Level.INSTANCE):
        if matching.condition is not None:
            instances = instances.filter(matching.condition)
    if scope.reports is not None:
        instances = instances.filter(Q(has_pixels=True) | _reports_readable("series__study", scope))
    return instances


def _reports_readable(path: str, scope: Scope) -> Q:
    return Q(**{f"{path}__in": Study.objects.filter(scope.reports).values("pk")})


# --- What a result shows ------------------------------------------------------------------------


@dataclass
class StudyFacts:
    """A study as this caller may see it: identified or anonymized, and the counts and
    modalities of what the access may list."""

    study: Study
    anonymized: bool
    reads_reports: bool
    series: int
    instances: int
    modalities: list[str]

    @cached_property
    def attributes(self) -> dict[str, dicomjson.JsonAttribute]:
        """Its study-level attributes, made once however many of its series or instances
        are listed."""
        return _attributes(_study_values(self))


@dataclass
class Row:
    facts: StudyFacts
    series: Series | None = None
    series_instances: int = 0
    instance: Instance | None = None


def _listed_counts(study_ids: Iterable[int]) -> dict[int, dict[int, tuple[str, int]]]:
    """Per study, per series: (modality, instances with pixel data), one query for all."""
    counts: dict[int, dict[int, tuple[str, int]]] = defaultdict(dict)
    rows = (
        Instance.objects.filter(series__study__in=list(study_ids), has_pixels=True)
        .values_list("series__study_id", "series_id", "series__modality")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for study_id, series_id, modality, n in rows:
        counts[study_id][series_id] = (modality, n)
    return counts


def study_facts(
    request: HttpRequest, scope: Scope, studies: Iterable[Study]
) -> dict[int, StudyFacts]:
    """The facts of each study. Those the scope shows plainly (identified, with reports) are
    shown so; the authority answers for the others, all at once, and a study it does not admit
    after all is left out."""
    by_pk = {study.pk: study for study in studies}
    answers: dict[int, StudyAccess | None] = {}
    if scope.plain is not None and by_pk:
        plain = set(
            Study.objects.filter(scope.plain, pk__in=list(by_pk)).values_list("pk", flat=True)
        )
        answers = accesses_for(request, [s for pk, s in by_pk.items() if pk not in plain])
    withheld = [pk for pk, access in answers.items() if access and not access.can_read_report]
    counts = _listed_counts(withheld) if withheld else {}
    facts: dict[int, StudyFacts] = {}
    for pk, study in by_pk.items():
        access = answers.get(pk, _PLAIN)
        if access is None:
            continue
        if access.can_read_report:
            facts[pk] = StudyFacts(
                study,
                anonymized=access.anonymized,
                reads_reports=True,
                series=study.series_count,
                instances=study.instance_count,
                modalities=study.modalities.split(),
            )
        else:
            listed = counts.get(pk, {})
            facts[pk] = StudyFacts(
                study,
                anonymized=access.anonymized,
                reads_reports=False,
                series=len(listed),
                instances=sum(n for _modality, n in listed.values()),
                modalities=sorted({modality for modality, _n in listed.values() if modality}),
            )
    return facts


def _study_values(facts: StudyFacts) -> dict[str, list[Any]]:
    study, patient = facts.study, facts.study.patient
    if facts.anonymized:
        alias = pseudonym(study)
        name, patient_id, birth_date, sex = alias.dicom_name, alias.patient_id, None, ""
        accession = referring = ""
    else:
        name, patient_id = patient.name, patient.patient_id
        birth_date, sex = patient.birth_date, patient.sex
        accession, referring = study.accession, study.referring_physician
    return {
        "StudyInstanceUID": [study.study_uid],
        "StudyDate": [dicomjson.da(study.study_date)],
        "StudyTime": [dicomjson.tm(study.study_time)],
        "AccessionNumber": [accession],
        "ModalitiesInStudy": facts.modalities,
        "ReferringPhysicianName": [referring],
        "PatientName": [name],
        "PatientID": [patient_id],
        "PatientBirthDate": [dicomjson.da(birth_date)],
        "PatientSex": [sex],
        "StudyID": [],
        "StudyDescription": [study.description],
        "NumberOfStudyRelatedSeries": [facts.series],
        "NumberOfStudyRelatedInstances": [facts.instances],
    }


def _series_values(series: Series, instances: int) -> dict[str, list[Any]]:
    return {
        "SeriesInstanceUID": [series.series_uid],
        "Modality": [series.modality],
        "SeriesNumber": [series.number],
        "SeriesDescription": [series.description],
        "BodyPartExamined": [series.body_part],
        "NumberOfSeriesRelatedInstances": [instances],
    }


def _instance_values(instance: Instance) -> dict[str, list[Any]]:
    pixels = instance.has_pixels
    return {
        "SOPClassUID": [instance.sop_class_uid],
        "SOPInstanceUID": [instance.sop_instance_uid],
        "InstanceNumber": [instance.number],
        "Rows": [instance.rows if pixels else None],
        "Columns": [instance.columns if pixels else None],
        "NumberOfFrames": [instance.frames if pixels else None],
    }


def returned_keywords(query: Query) -> list[str]:
    """What each result holds: the level's defaults (and those of the levels above when the
    path does not name them), the matching keys, and what includefield asks for."""
    level = query.level
    named = {Level.STUDY: query.study_uid, Level.SERIES: query.series_uid}

    def wanted(attribute: Attribute) -> bool:
        if attribute.level is None:
            return True
        if attribute.level > level:
            return False
        if query.include_all or attribute.keyword in query.include:
            return True
        if attribute.keyword in _ALWAYS_BELOW.get(level, ()):
            return True
        on_own_level = attribute.level == level or named.get(attribute.level) is None
        return attribute.default and on_own_level

    keywords = {a.keyword for a in ATTRIBUTES if wanted(a)}
    keywords |= {f.attribute.keyword for f in query.filters}
    return sorted(keywords, key=lambda keyword: _TAGS[keyword])


def _attributes(values: dict[str, list[Any]]) -> dict[str, dicomjson.JsonAttribute]:
    return {
        keyword: dicomjson.attribute(_VRS[keyword], *found) for keyword, found in values.items()
    }


_COMMON = _attributes({"SpecificCharacterSet": ["ISO_IR 192"], "InstanceAvailability": ["ONLINE"]})


def _dataset(
    row: Row, keywords: list[str], retrieve_base: str
) -> dict[str, dicomjson.JsonAttribute]:
    url = f"{retrieve_base}/{row.facts.study.study_uid}"
    attributes = _COMMON | row.facts.attributes
    if row.series is not None:
        attributes |= _attributes(_series_values(row.series, row.series_instances))
        url = f"{url}/series/{row.series.series_uid}"
    if row.instance is not None:
        attributes |= _attributes(_instance_values(row.instance))
        url = f"{url}/instances/{row.instance.sop_instance_uid}"
    attributes["RetrieveURL"] = {"vr": "UR", "Value": [url]}
    return {_KEYS[keyword]: attributes[keyword] for keyword in keywords}


# --- Running a search ---------------------------------------------------------------------------


def _study_rows(request: HttpRequest, scope: Scope, query: Query) -> tuple[list[Row], bool]:
    studies = matching_studies(scope, query).select_related("patient")
    page = list(
        studies.order_by(F("study_date").desc(nulls_last=True), "-pk")[
            query.offset : query.offset + query.limit + 1
        ]
    )
    facts = study_facts(request, scope, page[: query.limit])
    rows = [Row(facts[study.pk]) for study in page[: query.limit] if study.pk in facts]
    return rows, len(page) > query.limit


def _series_counts(series: list[Series], facts: dict[int, StudyFacts]) -> dict[int, int]:
    """Instances each series may list: all of them, or those with pixel data without the
    reports (one query for all such series)."""
    withheld = [s.pk for s in series if not facts[s.study_id].reads_reports]
    counts = {s.pk: s.instance_count for s in series}
    if withheld:
        counts.update(
            Instance.objects.filter(series__in=withheld, has_pixels=True)
            .values_list("series_id")
            .annotate(n=Count("pk"))
            .order_by()
        )
        counts.update({pk: 0 for pk in withheld if pk not in counts})
    return counts


_SERIES_ORDER = (F("study__study_date").desc(nulls_last=True), "-study_id")


def _series_rows(request: HttpRequest, scope: Scope, query: Query) -> tuple[list[Row], bool]:
    series = matching_series(scope, query, listed=True).select_related("study__patient")
    page = list(
        series.order_by(*_SERIES_ORDER, F("number").asc(nulls_last=True), "pk")[
            query.offset : query.offset + query.limit + 1
        ]
    )
    shown = page[: query.limit]
    facts = study_facts(request, scope, {s.study_id: s.study for s in shown}.values())
    shown = [s for s in shown if s.study_id in facts]
    counts = _series_counts(shown, facts)
    rows = [Row(facts[s.study_id], series=s, series_instances=counts[s.pk]) for s in shown]
    return rows, len(page) > query.limit


def _instance_rows(request: HttpRequest, scope: Scope, query: Query) -> tuple[list[Row], bool]:
    instances = matching_instances(scope, query).select_related("series__study__patient")
    page = list(
        instances.order_by(
            F("series__study__study_date").desc(nulls_last=True),
            "-series__study_id",
            F("series__number").asc(nulls_last=True),
            "series_id",
            F("number").asc(nulls_last=True),
            "pk",
        )[query.offset : query.offset + query.limit + 1]
    )
    shown = page[: query.limit]
    facts = study_facts(request, scope, {i.series.study_id: i.series.study for i in shown}.values())
    shown = [i for i in shown if i.series.study_id in facts]
    counts = _series_counts(list({i.series_id: i.series for i in shown}.values()), facts)
    rows = [
        Row(
            facts[i.series.study_id],
            series=i.series,
            series_instances=counts[i.series_id],
            instance=i,
        )
        for i in shown
    ]
    return rows, len(page) > query.limit


_RUNNERS: dict[Level, Callable[[HttpRequest, Scope, Query], tuple[list[Row], bool]]] = {
    Level.STUDY: _study_rows,
    Level.SERIES: _series_rows,
    Level.INSTANCE: _instance_rows,
}


def _negotiate(request: HttpRequest) -> str:
    """The media type to answer with, or 406: DICOM JSON, or plain JSON for a client asking
    only for that."""
    accept = request.GET.get("accept") or request.headers.get("Accept")
    for media_range in parse_accept(accept):
        for media_type in _ACCEPTABLE:
            if media_type_matches(media_range.media_type, media_type):
                return media_type
    raise DicomwebError(
        406, "QIDO-RS answers application/dicom+json (or application/json); ask for one of them."
    )


# Answers larger than this are computed each time rather than kept in the shared cache.
_REMEMBERED_ANSWER_BYTES = 256 * 1024


def _answer(
    request: HttpRequest, level: Level, query: Query, path: tuple[str | None, str | None]
) -> tuple[str, int, bool]:
    """The answer's JSON text, its number of results and whether more exist, remembered
    (``portal.decisions``) for this principal and these exact parameters: every change to a
    study, an instance, an entry or anything else access depends on moves the generation on,
    the first of the principal's dated shares to end ends it, and the session's grants are part
    of the key. A radiologist's viewer asks the same searches again and again."""

    def compute() -> tuple[tuple[str, int, bool], datetime | None]:
        rows, more = _RUNNERS[level](request, scope_for(request), query)
        keywords = returned_keywords(query)
        retrieve_base = settings.SITE_URL + reverse("dicomweb:studies")
        body = [_dataset(row, keywords, retrieve_base) for row in rows]
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        until = access_ends(request.user)
        if len(text) > _REMEMBERED_ANSWER_BYTES:
            until = timezone.now()  # not kept
        return (text, len(body), more), until

    return decisions.remember(_answer_key(request, level, path), compute)


def _answer_key(
    request: HttpRequest,
    level: Level,
    path: tuple[str | None, str | None],
    principal: str | None = None,
) -> str:
    return search_decision_key(
        request, "qido", level.name, path, sorted(request.GET.lists()), principal=principal
    )


def _answer_ahead(level: Level) -> DecisionsAhead:
    """The remembered answer a search at ``level`` asks for (``dicomweb_view``'s ``ahead``)."""

    def ahead(principal: str, request: HttpRequest, kwargs: dict[str, object]) -> list[str]:
        study_uid, series_uid = kwargs.get("study_uid"), kwargs.get("series_uid")
        path = (
            study_uid if isinstance(study_uid, str) else None,
            series_uid if isinstance(series_uid, str) else None,
        )
        return [_answer_key(request, level, path, principal)]

    return ahead


def search(
    request: HttpRequest,
    level: Level,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> HttpResponse:
    content_type = _negotiate(request)
    query = parse_query(request.GET, level, study_uid=study_uid, series_uid=series_uid)
    body, results, more = _answer(request, level, query, (study_uid, series_uid))
    record_query(request, level=level.label, keys=query.audit_keys, results=results)
    response = HttpResponse(body, content_type=content_type)
    response.headers["Vary"] = "Accept"
    if more:
        # PS3.18 8.3.4.4: the client may ask for the rest with offset.
        host = urlsplit(settings.SITE_URL).netloc or request.get_host()
        response.headers["Warning"] = f"299 {host}: {_WARNING_TEXT}"
    return response


# --- Views --------------------------------------------------------------------------------------


@dicomweb_view("GET", ahead=_answer_ahead(Level.STUDY))
def search_studies(request: HttpRequest) -> HttpResponse:
    return search(request, Level.STUDY)


@dicomweb_view("GET", ahead=_answer_ahead(Level.SERIES))
def search_series(request: HttpRequest, study_uid: str | None = None) -> HttpResponse:
    return search(request, Level.SERIES, study_uid=study_uid)


@dicomweb_view("GET", ahead=_answer_ahead(Level.INSTANCE))
def search_instances(
    request: HttpRequest, study_uid: str | None = None, series_uid: str | None = None
) -> HttpResponse:
    return search(request, Level.INSTANCE, study_uid=study_uid, series_uid=series_uid)
