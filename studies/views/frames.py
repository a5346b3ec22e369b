"""Rendered frames and series thumbnails, at DICOMweb's WADO-RS "rendered" resource path.

Every request goes through ``studies.access.get_study_for``; a series or instance that is not
part of that study answers 404, exactly like one that does not exist. Rendered bytes are cached
by the file's content hash, frame, window and format: the key holds no patient data, and two
recipients of the same study (anonymized or not) share the cache, since the server never draws
text on the pixels.

Auditing every frame of a 500-slice scroll would bury the trail, so viewing is recorded as one
FRAMES_RENDERED event per principal and study per 30 minutes (a "render session").
"""

from __future__ import annotations

import hashlib
import logging
from functools import wraps

from django.core.cache import caches
from django.core.files.storage import storages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import ApiTokenAuthentication
from audit.models import Action
from audit.services import client_ip, record
from studies.access import StudyAccess, get_study_for
from studies.models import Instance, Series, Study
from studies.rendering import RenderError, Window, render_frame

logger = logging.getLogger(__name__)

RENDER_SESSION_SECONDS = 30 * 60
THUMBNAIL_SIZE = 128
_CACHE_VERSION = "v1"
_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def accepts_api_token(view):
    """Let DICOMweb clients authenticate with ``Authorization: Token ...`` (the REST API's
    tokens) on these plain Django views; a browser session or a guest-link grant still works."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        header = request.headers.get("Authorization", "")
        if not request.user.is_authenticated and header.lower().startswith("token "):
            try:
                authenticated = ApiTokenAuthentication().authenticate(request)
            except AuthenticationFailed as failed:
                return HttpResponse(
                    str(failed.detail),
                    status=401,
                    content_type="text/plain; charset=utf-8",
                    headers={"WWW-Authenticate": "Token"},
                )
            if authenticated is not None:
                request.user = authenticated[0]
        return view(request, *args, **kwargs)

    return wrapper


# --- Content negotiation ----------------------------------------------------------------------


def negotiate_format(accept: str) -> str | None:
    """ "png" or "jpeg" for an Accept header; None when it excludes both (406).

    PNG is the default (lossless, right for diagnostic greyscale); JPEG when the client
    prefers it. Among equal preferences, the type named first wins.
    """
    if not accept.strip():
        return "png"
    best: dict[str, tuple[int, float, int]] = {}  # format -> (specificity, q, position)
    for position, part in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            key, _sep, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        for fmt, content_type in _CONTENT_TYPES.items():
            if media == content_type:
                specificity = 2
            elif media == "image/*":
                specificity = 1
            elif media == "*/*":
                specificity = 0
            else:
                continue
            # The most specific range that matches a type decides its quality (RFC 9110).
            if fmt not in best or specificity > best[fmt][0]:
                best[fmt] = (specificity, quality, position if specificity == 2 else 10**6)
    candidates = [(q, -pos, fmt == "png", fmt) for fmt, (_s, q, pos) in best.items() if q > 0]
    if not candidates:
        return None
    return max(candidates)[3]


# --- Rendering and caching --------------------------------------------------------------------


def frame_cache_key(
    instance: Instance, *, frame: int, window: Window | None, image_format: str, size: int | None
) -> str:
    """Content hash + rendering parameters: no patient data, and the same bytes rendered the
    same way are cached once whichever study or recipient asks."""
    window_part = f"{window.center:g},{window.width:g}" if window else "default"
    return (
        f"frame:{_CACHE_VERSION}:{instance.sha256}:{frame}:{window_part}:{image_format}:"
        f"{size or 'full'}"
    )


def rendered_bytes(
    instance: Instance,
    *,
    frame: int,
    window: Window | None,
    image_format: str,
    max_size: int | None = None,
) -> bytes:
    cache = caches["frames"]
    key = frame_cache_key(
        instance, frame=frame, window=window, image_format=image_format, size=max_size
    )
    body = cache.get(key)
    if body is None:
        with storages["dicom"].open(instance.file, "rb") as source:
            body = render_frame(
                source, frame=frame, window=window, image_format=image_format, max_size=max_size
            )
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
    request: HttpRequest, study: Study, access: StudyAccess, *, series_uid: str
) -> None:
    """Record FRAMES_RENDERED at most once per principal and study per render session."""
    key = f"frames-audit:{_principal(request)}:{study.pk}"
    # add() is atomic: of concurrent first frames, exactly one records the event.
    if caches["default"].add(key, True, timeout=RENDER_SESSION_SECONDS):
        record(
            action=Action.FRAMES_RENDERED,
            request=request,
            study=study,
            details={
                "series_uid": series_uid,
                "anonymized": access.anonymized,
                "via": access.via,
            },
        )


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def _image_response(body: bytes, image_format: str) -> HttpResponse:
    response = HttpResponse(body, content_type=_CONTENT_TYPES[image_format])
    response.headers["Vary"] = "Accept, Cookie, Authorization"
    response.headers["Content-Length"] = str(len(body))
    return response


def _render_or_error(instance: Instance, **kwargs) -> bytes | HttpResponse:
    try:
        return rendered_bytes(instance, **kwargs)
    except RenderError as error:
        logger.warning("Instance id %s cannot be rendered: %s", instance.pk, error)
        return _plain(422, _("This image cannot be displayed: %(reason)s") % {"reason": error})


# --- Views ------------------------------------------------------------------------------------


@require_safe
@accepts_api_token
def rendered_frame(
    request: HttpRequest, study_uid: str, series_uid: str, instance_uid: str, frame: int
) -> HttpResponse:
    study, access = get_study_for(request, study_uid)
    instance = get_object_or_404(
        Instance.objects.select_related("series"),
        sop_instance_uid=instance_uid,
        series__series_uid=series_uid,
        series__study=study,
    )
    image_format = negotiate_format(request.headers.get("Accept", ""))
    if image_format is None:
        return _plain(406, _("Frames are available as image/png or image/jpeg."))
    window = None
    if "window" in request.GET:
        try:
            window = Window.parse(request.GET["window"])
        except ValueError as error:
            return _plain(
                400,
                _("The window must be two numbers, center and width, e.g. 40,400 (%(error)s).")
                % {"error": error},
            )
    if not instance.has_pixels or not instance.file or not 1 <= frame <= instance.frames:
        raise Http404("No such frame.")

    body = _render_or_error(instance, frame=frame, window=window, image_format=image_format)
    if isinstance(body, HttpResponse):
        return body
    note_render_session(request, study, access, series_uid=series_uid)
    return _image_response(body, image_format)


@require_safe
@accepts_api_token
def series_thumbnail(request: HttpRequest, study_uid: str, series_uid: str) -> HttpResponse:
    """The middle image of a series, at most 128 pixels square, as PNG."""
    study, access = get_study_for(request, study_uid)
    series = get_object_or_404(Series, series_uid=series_uid, study=study)
    instances = list(
        Instance.objects.filter(series=series, has_pixels=True)
        .exclude(file="")
        .order_by("number", "id")
    )
    if not instances:
        raise Http404("This series has no images.")
    middle = instances[len(instances) // 2]
    body = _render_or_error(
        middle, frame=1, window=None, image_format="png", max_size=THUMBNAIL_SIZE
    )
    if isinstance(body, HttpResponse):
        return body
    note_render_session(request, study, access, series_uid=series_uid)
    return _image_response(body, "png")
