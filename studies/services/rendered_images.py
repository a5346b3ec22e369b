"""Rendered images of stored instances: their cache, and the audit of viewing them.

Rendered bytes are cached by the file's content hash and every parameter that changes them
(frame, window, format, size, viewport, JPEG quality): the key holds no patient data, and two
recipients of the same study (anonymized or not) share the cache, since the server never draws
text on the pixels.

A full-size frame joins the shared cache the second time a process renders it, not the first
(:class:`RecentRenderings`). A viewer opening a series asks for each frame once, and its browser
keeps what it got (a private response at a versioned address), so most frames are never asked
for again: asking the cache for each of them and writing it there (some 30 kB a slice) cost an
eighth of a cold frame's time, and a day's viewings (5 MB a 200-slice series) would have filled
the cache with frames no one reads. A frame asked for again (another recipient, another
window) is kept from then on. Thumbnails, small and shown on every visit to a list, are kept at
once.

Auditing every frame of a 500-slice scroll would bury the trail, so viewing is recorded as one
FRAMES_RENDERED event per principal and study per 30 minutes (a "render session").
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from django.core.cache import caches
from django.core.files.storage import storages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.models import Action
from audit.services import client_ip, record
from portal.once import first_in_period
from portal.prepared_queries import prepared_models
from studies.access import StudyAccess
from studies.models import Study
from studies.rendering import JPEG_QUALITY, PlainImage, Viewport, Window, render_frame

RENDER_SESSION_SECONDS = 30 * 60


class StoredImage(Protocol):
    """What rendering needs of an instance: an Instance, or the values remembered of one for
    its viewers (``studies.frame_sources.FrameSource``)."""

    @property
    def file(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def plain_image(self) -> Any: ...


_CACHE_VERSION = "v2"


def frame_cache_key(
    instance: StoredImage,
    *,
    frame: int,
    window: Window | None,
    image_format: str,
    size: int | None,
    viewport: Viewport | None = None,
    quality: int = JPEG_QUALITY,
) -> str:
    """Content hash + rendering parameters: no patient data, and the same bytes rendered the
    same way are cached once whichever study or recipient asks."""
    window_part = "default"
    if window is not None:
        window_part = f"{window.center:g},{window.width:g}"
        if window.function:
            window_part += f",{window.function}"
    viewport_part = "none"
    if viewport is not None:
        viewport_part = ",".join(
            str(value)
            for value in (
                viewport.width,
                viewport.height,
                viewport.x,
                viewport.y,
                viewport.region_width,
                viewport.region_height,
            )
        )
    # Quality changes only JPEG bytes; leaving it out of other formats' keys shares their cache.
    quality_part = f"q{quality}" if image_format == "jpeg" else "lossless"
    return (
        f"frame:{_CACHE_VERSION}:{instance.sha256}:{frame}:{window_part}:{image_format}:"
        f"{size or 'full'}:{viewport_part}:{quality_part}"
    )


class RecentRenderings:
    """The cache keys this process rendered lately: two generations of at most ``limit`` keys'
    hashes each (about 1.5 MB), the older dropped when the newer fills. A key forgotten, or two
    keys sharing a hash, only moves when a frame joins the cache."""

    def __init__(self, limit: int):
        self.limit = limit
        self._newer: set[int] = set()
        self._older: set[int] = set()

    def seen_before(self, key: str) -> bool:
        """Whether ``key`` was rendered lately; it is noted as rendered now either way."""
        digest = hash(key)
        if digest in self._newer or digest in self._older:
            return True
        if len(self._newer) >= self.limit:
            self._older, self._newer = self._newer, set()
        self._newer.add(digest)
        return False

    def clear(self) -> None:
        self._newer.clear()
        self._older.clear()


recent_renderings = RecentRenderings(limit=10_000)


def rendered_bytes(
    instance: StoredImage,
    *,
    frame: int,
    window: Window | None,
    image_format: str,
    max_size: int | None = None,
    viewport: Viewport | None = None,
    quality: int = JPEG_QUALITY,
) -> bytes:
    """The frame rendered so, from the cache or from the stored file. A thumbnail (``max_size``)
    is cached at once, a full-size frame once this process renders it again (see the module's
    docstring). Raises RenderError when it cannot be rendered."""
    cache = caches["frames"]
    key = frame_cache_key(
        instance,
        frame=frame,
        window=window,
        image_format=image_format,
        size=max_size,
        viewport=viewport,
        quality=quality,
    )
    cached = max_size is not None or recent_renderings.seen_before(key)
    body: bytes | None = cache.get(key) if cached else None
    if body is None:
        with storages["dicom"].open(instance.file, "rb") as source:
            body = render_frame(
                source,
                frame=frame,
                window=window,
                image_format=image_format,
                max_size=max_size,
                viewport=viewport,
                quality=quality,
                plain=PlainImage.from_json(instance.plain_image),
            )
        if cached:
            cache.set(key, body)
    return body


def _principal(request: HttpRequest) -> str:
    if request.user.is_authenticated:
        return f"user:{request.user.pk}"
    session_key = getattr(request, "session", None) and request.session.session_key
    if session_key:
        # Hashed: cache keys may be listed on a shared Redis; a session key opens a session.
        return "session:" + hashlib.sha256(session_key.encode()).hexdigest()[:32]
    return f"ip:{client_ip(request) or 'unknown'}"


def note_render_session(
    request: HttpRequest,
    study_pk: int,
    access: StudyAccess,
    *,
    series_uid: str,
    action: str = Action.FRAMES_RENDERED,
    details: dict | None = None,
) -> None:
    """Record ``action`` (FRAMES_RENDERED, or INSTANCES_RETRIEVED for DICOMweb frames) at most
    once per principal, study and action per render session: a viewer fetches one frame per
    request as it scrolls. The study is read only for the request that records, the first
    frame of a viewing, which others wait for (its query built once:
    ``portal.prepared_queries``)."""
    key = f"frames-audit:{action}:{_principal(request)}:{study_pk}"
    # Of concurrent first frames, exactly one records the event.
    if first_in_period(key, RENDER_SESSION_SECONDS):
        found = prepared_models(_study_with_patient, [study_pk])
        if not found:
            raise Study.DoesNotExist(f"No study has the key {study_pk}.")
        record(
            action=action,
            request=request,
            study=found[0],
            details={
                "series_uid": series_uid,
                "anonymized": access.anonymized,
                "via": access.via,
                **(details or {}),
            },
        )


def _study_with_patient(keys: list[int]) -> QuerySet[Study]:
    [key] = keys
    return Study.objects.select_related("patient").filter(pk=key)
