"""WADO-RS rendered resources and thumbnails (PS3.18 10.4.1.1.3), at study, series, instance and
frame level: one consumer image (PNG, JPEG or GIF) of what the caller may see.

What each level answers, as one image rather than a multipart of renderings, because that is
what clients ask for and expect (dicomweb-client returns the body as one image, OHIF shows it as
a thumbnail) and what Orthanc does:

- a frame: that frame;
- an instance: its first frame (a multi-frame instance has no single-image media type);
- a series: the first frame of its first image, in instance order;
- a study: the first frame of the first image of its first series with images.

A thumbnail is one representative image, at most 128 pixels square unless a ``viewport`` asks
for another size: the frame itself at frame level, an instance's middle frame, the middle image
of a series (the viewer's series strip) and the middle image of a study's first series.

Query parameters (PS3.18 8.3.5.1): ``window=center,width[,linear|linear-exact|sigmoid]``,
``viewport=vw,vh[,sx,sy,sw,sh]`` (the source region, default the whole image, scaled to fit
vw x vh keeping its aspect ratio; a negative sw or sh flips), ``quality=1..100`` (JPEG), and
``accept``, which stands in for the Accept header. Others (``annotation``...) are ignored, as
PS3.18 asks, except the portal's own ``v``: a frame asked with its content version
(``Instance.content_version``, as the viewer asks) may stay in the browser's private cache. A bad
value is 400 saying why; a media type other than image/png, image/jpeg or
image/gif is 406 (PNG is the default: lossless, right for diagnostic greyscale).

Every request goes through ``dicomweb.scope``: a series, instance or frame that is not part of
the study in the path, or that the access does not reach, answers 404 exactly like one that does
not exist; so does an object without pixel data. Pixel data that cannot be decoded is 422 with
the reason. Viewing is audited once per render session (``studies.services.rendered_images``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from dicomweb.http import DicomwebError, bad_request, dicomweb_view, not_found
from dicomweb.scope import instance_decision_ahead, instance_target, instances_for, study_for
from portal.http import allow_private_caching
from studies.access import StudyAccess
from studies.frame_sources import FrameSource
from studies.models import Instance, Study
from studies.rendering import JPEG_QUALITY, RenderError, Viewport, Window
from studies.services.rendered_images import note_render_session, rendered_bytes

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 128
_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif"}
# Among equally acceptable types: lossless first, then the widely supported JPEG.
_PREFERENCE = {"png": 2, "jpeg": 1, "gif": 0}


# --- Content negotiation ----------------------------------------------------------------------


def negotiate_format(accept: str) -> str | None:
    """ "png", "jpeg" or "gif" for an Accept header; None when it excludes all three (406).

    PNG is the default (lossless, right for diagnostic greyscale). A type named explicitly
    beats one reached through ``image/*`` or ``*/*`` at the same quality; among explicit types
    of equal quality, the one named first wins.
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
    candidates = [
        (q, -position, _PREFERENCE[fmt], fmt)
        for fmt, (_specificity, q, position) in best.items()
        if q > 0
    ]
    if not candidates:
        return None
    return max(candidates)[3]


# --- Parameters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rendering:
    image_format: str
    window: Window | None
    viewport: Viewport | None
    quality: int


def _rendering(request: HttpRequest) -> _Rendering:
    """The request's rendering parameters, or a 400/406 saying what is wrong."""
    accept = request.GET.get("accept") or request.headers.get("Accept", "")
    image_format = negotiate_format(accept)
    if image_format is None:
        raise DicomwebError(
            406, _("Rendered images are available as image/png, image/jpeg or image/gif.")
        )
    window = viewport = None
    if "window" in request.GET:
        try:
            window = Window.parse(request.GET["window"])
        except ValueError as error:
            raise bad_request(
                _(
                    "The window must be two numbers, center and width, optionally followed by "
                    "linear, linear-exact or sigmoid, e.g. 40,400 or 40,400,sigmoid "
                    "(%(error)s)."
                )
                % {"error": error}
            ) from None
    if "viewport" in request.GET:
        try:
            viewport = Viewport.parse(request.GET["viewport"])
        except ValueError as error:
            raise bad_request(
                _(
                    "The viewport must be a width and height in pixels, optionally followed by "
                    "the source region's x, y, width and height, e.g. 256,256 or "
                    "256,256,0,0,100,100 (%(error)s)."
                )
                % {"error": error}
            ) from None
    quality = JPEG_QUALITY
    if "quality" in request.GET:
        raw = request.GET["quality"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise bad_request(
                _("The quality must be a whole number from 1 to 100, got %(value)s.")
                % {"value": raw[:20]}
            )
        quality = int(raw)
    return _Rendering(image_format, window, viewport, quality)


# --- What to render ---------------------------------------------------------------------------


def _middle_frame(instance: Instance | FrameSource) -> int:
    return (max(instance.frames, 1) + 1) // 2


def _instance_target(
    request: HttpRequest,
    *,
    study_uid: str,
    series_uid: str,
    instance_uid: str,
    frame: int | None,
    thumbnail: bool,
) -> tuple[int, StudyAccess, FrameSource, int]:
    """An instance or frame level request: the study's key, the access, the instance and the
    frame, from the decision remembered for the viewer's frames (``scope.instance_target``)."""
    target = instance_target(request, study_uid, series_uid, instance_uid)
    instance = target.instance
    if not instance.has_pixels:
        raise not_found(_("No such image."))
    if frame is None:
        frame = _middle_frame(instance) if thumbnail else 1
    elif not 1 <= frame <= instance.frames:
        raise not_found(_("No such frame."))
    return target.study_pk, target.access, instance, frame


def _target(
    study: Study,
    access: StudyAccess,
    *,
    series_uid: str | None,
    thumbnail: bool,
) -> tuple[Instance, int]:
    """The instance and frame a study or series level request renders (see the module
    docstring), or 404."""
    images: QuerySet[Instance] = instances_for(study, access, series_uid=series_uid).filter(
        has_pixels=True
    )
    first = images.first()
    if first is None:
        raise not_found(_("No images here."))
    if series_uid is None:
        images = images.filter(series=first.series)
    if not thumbnail:
        return first, 1
    middle = images[images.count() // 2]
    return middle, _middle_frame(middle)


# --- Views ------------------------------------------------------------------------------------


def _answer(
    request: HttpRequest,
    *,
    study_uid: str,
    series_uid: str | None,
    instance_uid: str | None,
    frame: int | None,
    thumbnail: bool,
) -> HttpResponse:
    rendering = _rendering(request)
    instance: Instance | FrameSource
    # An instance's address always names its series too (urls.py).
    if instance_uid is not None and series_uid is not None:
        study_pk, access, instance, number = _instance_target(
            request,
            study_uid=study_uid,
            series_uid=series_uid,
            instance_uid=instance_uid,
            frame=frame,
            thumbnail=thumbnail,
        )
    else:
        study, access = study_for(request, study_uid)
        study_pk = study.pk
        instance, number = _target(study, access, series_uid=series_uid, thumbnail=thumbnail)
        series_uid = instance.series.series_uid
    try:
        body = rendered_bytes(
            instance,
            frame=number,
            window=rendering.window,
            image_format=rendering.image_format,
            max_size=THUMBNAIL_SIZE if thumbnail and rendering.viewport is None else None,
            viewport=rendering.viewport,
            quality=rendering.quality,
        )
    except RenderError as error:
        logger.warning("Instance id %s cannot be rendered: %s", instance.pk, error)
        raise DicomwebError(
            422, _("This image cannot be displayed: %(reason)s") % {"reason": error}
        ) from None
    except ValueError as error:
        # The only argument render_frame can refuse at this point: a viewport's source region
        # outside this image, which the request could not know before.
        raise bad_request(str(error)) from None
    note_render_session(request, study_pk, access, series_uid=series_uid)
    response = HttpResponse(body, content_type=_CONTENT_TYPES[rendering.image_format])
    response.headers["Vary"] = "Accept, Cookie, Authorization"
    response.headers["Content-Length"] = str(len(body))
    seconds = settings.RENDERED_FRAME_BROWSER_SECONDS
    versioned = request.GET.get("v") == instance.content_version
    if instance_uid is not None and seconds > 0 and versioned:
        # The address names these exact bytes (and the window and format): the viewer's
        # browser may keep the image, for the signed-in user alone.
        response.headers["Cache-Control"] = f"private, max-age={seconds}"
        allow_private_caching(response)
    return response


@dicomweb_view("GET", ahead=instance_decision_ahead)
def rendered(
    request: HttpRequest,
    study_uid: str,
    series_uid: str | None = None,
    instance_uid: str | None = None,
    frame: int | None = None,
) -> HttpResponse:
    """``.../rendered`` at study, series, instance and frame level."""
    return _answer(
        request,
        study_uid=study_uid,
        series_uid=series_uid,
        instance_uid=instance_uid,
        frame=frame,
        thumbnail=False,
    )


@dicomweb_view("GET", ahead=instance_decision_ahead)
def thumbnail(
    request: HttpRequest,
    study_uid: str,
    series_uid: str | None = None,
    instance_uid: str | None = None,
    frame: int | None = None,
) -> HttpResponse:
    """``.../thumbnail`` at study, series, instance and frame level."""
    return _answer(
        request,
        study_uid=study_uid,
        series_uid=series_uid,
        instance_uid=instance_uid,
        frame=frame,
        thumbnail=True,
    )
