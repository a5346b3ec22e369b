from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.http.message import Request
from gunicorn.http.wsgi import Response

from portal.logging import mask_secrets

# Access-log atoms that carry the URL or the referring URL.
_URL_ATOMS = ("r", "U", "q", "f", "{raw_uri}e")


def _client_address(environ: dict[str, Any]) -> str | None:
    """The client as the portal sees it (portal.clients: behind a trusted proxy, the address
    it forwards), once Django's settings are loaded, as they are in a worker serving requests."""
    from django.conf import settings

    if not settings.configured:
        return None
    from portal.clients import client_ip_from

    return client_ip_from(environ)


class MaskingLogger(Logger):
    """Gunicorn's access log writes request lines itself, outside Django's logging: mask link
    tokens, secrets and patient search terms there too, and name the client the throttles and
    the audit trail name rather than the proxy in front."""

    def atoms(
        self, resp: Response, req: Request, environ: dict[str, Any], request_time: timedelta
    ) -> dict[str, object]:
        atoms: dict[str, object] = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = mask_secrets(value)
        client = _client_address(environ)
        if client:
            atoms["h"] = client
        return atoms
