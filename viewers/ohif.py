"""OHIF on its own origin: the WSGI application that serves the installed viewer.

OHIF needs what the portal's own pages must never allow (``'unsafe-eval'`` for its JPEG 2000
and JPEG-LS decoders, inline scripts and styles), so it is served from another origin (its own
port or host), where its policy allows exactly that and nothing reaches the portal's cookies.
This application knows nothing of the portal's database: it serves the files
``manage.py install_ohif`` unpacked into ``OHIF_DIR``, the single-page app's ``index.html`` for
every other path, and an ``app-config.js`` written from the portal's settings:

- one DICOMweb data source, the portal's ``/dicomweb`` (``SITE_URL``), which OHIF reads with
  the viewer token it is given (``?token=``, sent as ``Authorization: Bearer``);
- no local files, no ``?url=`` sources, no configuration or customization loaded from the
  address, no study list (a viewer opens the studies it was given), no telemetry;
- at most ``OHIF_MAX_REQUESTS`` image requests at once, what the portal's workers hold;

and ``portal-session.js``, which its page runs first: it keeps the viewer token and has the
portal renew it halfway through each token's life while the portal session that opened OHIF
lives (``viewers:refresh_ohif_token``).

Every answer says ``Referrer-Policy: no-referrer`` (the address carries the token) and
``X-Frame-Options: DENY``. Run it with gunicorn (``viewers.ohif:application``), as ``make run``
and the Compose file do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from whitenoise import WhiteNoise

_StartResponse = Callable[..., object]
Environ = dict[str, Any]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def app_config(*, portal_url: str, max_requests: int) -> dict[str, object]:
    """OHIF's configuration (``window.config``): the portal's DICOMweb as its one data source
    and nothing loaded from elsewhere."""
    dicomweb = f"{portal_url.rstrip('/')}/dicomweb"
    return {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": False,
        "investigationalUseDialog": {"option": "never"},
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "maxNumRequests": {
            "interaction": max_requests,
            "thumbnail": min(max_requests, 4),
            "prefetch": max_requests,
        },
        "showErrorDetails": "production",
        "defaultDataSourceName": "portal",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "portal",
                "configuration": {
                    "friendlyName": "Study portal",
                    "name": "portal",
                    "wadoUriRoot": dicomweb,
                    "qidoRoot": dicomweb,
                    "wadoRoot": dicomweb,
                    "qidoSupportsIncludeField": True,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": False,
                    "supportsWildcard": True,
                    "staticWado": False,
                    "singlepart": "bulkdata,video",
                    "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
                    "omitQuotationForMultipartRequest": True,
                },
            }
        ],
    }


_SESSION_SCRIPT = """\
// The viewer token this page was opened with, renewed by the portal before it ends, for as long
// as the portal session that opened OHIF lives (served by the portal's viewers.ohif).
(function () {
  const settings = %(settings)s;
  let token = new URLSearchParams(window.location.search).get("token");
  if (!token) return;
  function schedule(seconds) {
    window.setTimeout(renew, seconds * 1000);
  }
  async function renew() {
    let response;
    try {
      response = await fetch(settings.refresh, {
        method: "POST",
        credentials: "include",
        headers: { Authorization: "Bearer " + token },
      });
    } catch (error) {
      schedule(settings.retry);
      return false;
    }
    // Refused: the session or the access has ended, and so do OHIF's next requests.
    if (!response.ok) return false;
    token = (await response.json()).token;
    const auth = window.services && window.services.userAuthenticationService;
    if (auth) {
      auth.setServiceImplementation({
        getAuthorizationHeader: () => ({ Authorization: "Bearer " + token }),
      });
    }
    schedule(settings.seconds);
    return true;
  }
  window.portalRenewToken = renew;
  schedule(settings.seconds);
})();
"""


def session_script(*, portal_url: str, token_seconds: int) -> str:
    """The script OHIF's page runs first: it keeps the viewer token from the page's address and
    asks the portal for a new one halfway through each token's life."""
    settings = {
        "refresh": f"{portal_url.rstrip('/')}/viewers/ohif/token/",
        "seconds": max(token_seconds // 2, 30),
        "retry": 15,
    }
    return _SESSION_SCRIPT % {"settings": json.dumps(settings)}


def content_security_policy(portal_url: str) -> str:
    """What OHIF needs and no more: its own scripts (with eval, for its image decoders, and
    WebAssembly), its inline styles and scripts, images and workers from blobs, and requests to
    its own origin and the portal's DICOMweb."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'unsafe-eval' 'unsafe-inline' 'wasm-unsafe-eval' blob:",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            f"connect-src 'self' {_origin(portal_url)}",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


class OhifApplication:
    """Serves ``dist`` (see the module docstring)."""

    def __init__(self, dist: Path, *, portal_url: str, max_requests: int, token_seconds: int = 900):
        index = dist / "index.html"
        if not index.is_file():
            raise FileNotFoundError(
                f"OHIF is not installed in {dist}: run `manage.py install_ohif` (needs npm)."
            )
        # Ours first, before OHIF's own scripts read the token and take it out of the address.
        self.index = index.read_bytes().replace(
            b"</head>", b'<script src="/portal-session.js"></script></head>', 1
        )
        config = json.dumps(app_config(portal_url=portal_url, max_requests=max_requests))
        self.config = f"window.config = {config};\n".encode()
        self.session = session_script(portal_url=portal_url, token_seconds=token_seconds).encode()
        self.headers = [
            ("Content-Security-Policy", content_security_policy(portal_url)),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ]
        # The bundles' names carry their hash: a year in the browser's cache.
        self.files = WhiteNoise(self._page, root=str(dist), max_age=365 * 24 * 3600)
        # Never served: the package's hosting notes and its Google configuration (its own
        # app-config.js is never reached: ours answers that address).
        self.hidden = {"/_headers", "/_redirects", "/serve.json", "/google.js"}

    def __call__(self, environ: Environ, start_response: _StartResponse) -> Iterable[bytes]:
        def with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> object:
            names = {name.lower() for name, _value in headers}
            headers = headers + [(n, v) for n, v in self.headers if n.lower() not in names]
            return start_response(status, headers, exc_info)

        path = environ.get("PATH_INFO", "/")
        if path == "/app-config.js":
            return self._answer(with_headers, self.config, "application/javascript")
        if path == "/portal-session.js":
            return self._answer(with_headers, self.session, "application/javascript")
        if path in self.hidden:
            return self._page(environ, with_headers)
        served: Iterable[bytes] = self.files(environ, with_headers)  # WhiteNoise is untyped
        return served

    def _page(self, environ: Environ, start_response: _StartResponse) -> Iterable[bytes]:
        """Every address that is not a file is a page of the single-page app."""
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        return self._answer(start_response, self.index, "text/html; charset=utf-8")

    @staticmethod
    def _answer(start_response: _StartResponse, body: bytes, content_type: str) -> list[bytes]:
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]


def from_settings() -> OhifApplication:
    """The application as the portal's settings describe it (``OHIF_DIR``, ``SITE_URL``,
    ``OHIF_MAX_REQUESTS``)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django
    from django.conf import settings

    django.setup()
    return OhifApplication(
        Path(settings.OHIF_DIR),
        portal_url=settings.SITE_URL,
        max_requests=settings.OHIF_MAX_REQUESTS,
        token_seconds=settings.VIEWER_TOKEN_SECONDS,
    )


def application(environ: Environ, start_response: _StartResponse) -> Iterable[bytes]:
    """gunicorn's entry point: built on the first request of each worker."""
    global _application
    if _application is None:
        _application = from_settings()
    return _application(environ, start_response)


_application: OhifApplication | None = None
