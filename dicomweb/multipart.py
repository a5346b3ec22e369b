"""``multipart/related`` bodies written as they stream (PS3.18 8.7.2 / RFC 2387), and the
``Accept`` header read with its media-range parameters.

A WADO-RS answer can be a whole series: :func:`multipart_stream` writes each part's headers,
then pulls its body from an iterator only when the response gets there, so the server holds one
part's chunk at a time, never the body.

DICOMweb clients write media-range parameters in every style: OHIF sends
``multipart/related; type=application/octet-stream; transfer-syntax=*`` unquoted,
dicomweb-client ``multipart/related; type="application/dicom"; transfer-syntax=...`` quoted.
:func:`parse_accept` reads both, and quoted values holding ``,`` or ``;``; it ignores parameters
it does not know and leaves out ranges it cannot read, rather than refusing the request.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse

MULTIPART_RELATED = "multipart/related"


# --- Accept ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept header, e.g. ``multipart/related`` with
    ``{"type": "application/dicom", "transfer-syntax": "*"}``."""

    media_type: str  # lower case
    params: Mapping[str, str] = field(default_factory=dict)  # names lower case, values unquoted
    q: float = 1.0

    @property
    def is_multipart(self) -> bool:
        return self.media_type in {MULTIPART_RELATED, "multipart/*"}

    @property
    def part_type(self) -> str | None:
        """The ``type`` parameter (lower case) of a multipart range, or None."""
        value = self.params.get("type", "").strip().lower()
        return value or None

    @property
    def transfer_syntax(self) -> str | None:
        """The ``transfer-syntax`` parameter: a UID, ``*``, or None when absent."""
        value = self.params.get("transfer-syntax", "").strip()
        return value or None

    def matches(self, media_type: str) -> bool:
        """Whether this range admits ``media_type`` (``*/*``, ``image/*`` or equal)."""
        return media_type_matches(self.media_type, media_type)


def media_type_matches(pattern: str, media_type: str) -> bool:
    """Whether a media range (``*/*``, ``image/*`` or a type) admits ``media_type``."""
    pattern, media_type = pattern.lower(), media_type.lower()
    if pattern == "*/*":
        return True
    main, _sep, sub = pattern.partition("/")
    if sub == "*":
        return media_type.partition("/")[0] == main
    return pattern == media_type


def parse_accept(header: str | None) -> list[MediaRange]:
    """The acceptable media ranges of an Accept header, best first: by ``q``, then in the order
    written. Ranges with ``q=0`` (not acceptable) and unreadable ranges are left out. An empty
    or missing header accepts anything: ``[*/*]``."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges: list[MediaRange] = []
    for written in _split(header, ","):
        media_type, *parameters = _split(written, ";")
        media_type = media_type.strip().lower()
        main, slash, sub = media_type.partition("/")
        if not slash or not main or not sub or " " in media_type:
            continue
        params: dict[str, str] = {}
        for parameter in parameters:
            name, equals, value = parameter.partition("=")
            name = name.strip().lower()
            if name and equals:
                params[name] = _unquote(value.strip())
        q = _quality(params.pop("q", None))
        if q > 0:
            ranges.append(MediaRange(media_type, params, q))
    # sorted() is stable: equal qualities keep the client's order.
    return sorted(ranges, key=lambda media_range: -media_range.q)


def _quality(value: str | None) -> float:
    if value is None:
        return 1.0
    try:
        q = float(value)
    except ValueError:
        return 1.0  # a malformed weight must not make a range unacceptable
    return min(max(q, 0.0), 1.0)


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside double-quoted strings."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return [piece for piece in pieces if piece.strip()] or [""]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        unescaped: list[str] = []
        escaped = False
        for char in inner:
            if escaped or char != "\\":
                unescaped.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(unescaped)
    return value


# --- Writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One body part: its Content-Type (with ``transfer-syntax`` where it applies) and its
    content, produced lazily as chunks of bytes."""

    content_type: str
    body: Iterable[bytes]
    location: str | None = None


def new_boundary() -> str:
    # 128 random bits: a boundary that occurs inside pixel data by chance is not a concern.
    return secrets.token_hex(16)


def multipart_content_type(part_type: str, boundary: str) -> str:
    return f'{MULTIPART_RELATED}; type="{part_type}"; boundary={boundary}'


def multipart_stream(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body of a ``multipart/related`` message: each part's headers, then its chunks as
    they are produced, then the closing delimiter."""
    delimiter = f"--{boundary}".encode("ascii")
    separator = b""
    for part in parts:
        headers = [f"Content-Type: {part.content_type}"]
        if part.location:
            headers.append(f"Content-Location: {part.location}")
        yield separator + delimiter + b"\r\n" + "\r\n".join(headers).encode("ascii") + b"\r\n\r\n"
        for chunk in part.body:
            if chunk:
                yield chunk
        separator = b"\r\n"
    yield separator + delimiter + b"--\r\n"


def multipart_response(
    parts: Iterable[Part], *, part_type: str, stream: bool = True, head: bool = False
) -> HttpResponseBase:
    """A ``multipart/related; type=part_type`` response. ``stream`` sends the parts as they are
    produced (no Content-Length); otherwise the body is built first. ``head`` answers with the
    headers alone, producing nothing."""
    boundary = new_boundary()
    content_type = multipart_content_type(part_type, boundary)
    if head:
        return HttpResponse(content_type=content_type)
    if stream:
        return StreamingHttpResponse(multipart_stream(parts, boundary), content_type=content_type)
    body = b"".join(multipart_stream(parts, boundary))
    response = HttpResponse(body, content_type=content_type)
    response.headers["Content-Length"] = str(len(body))
    return response
