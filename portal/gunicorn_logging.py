from gunicorn.glogging import Logger

from portal.logging import mask_secrets

# Access-log atoms that carry the URL or the referring URL.
_URL_ATOMS = ("r", "U", "q", "f", "{raw_uri}e")


class MaskingLogger(Logger):
    """Gunicorn's access log writes request lines itself, outside Django's logging: mask link
    tokens, secrets and patient search terms there too."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = mask_secrets(atoms[key])
        return atoms
