"""Django's database sessions, one query lighter for every new session (a login, a guest link
opened). With a shared cache, ``portal.cached_sessions`` reads them from it.

Django asks the database whether a freshly drawn random key is taken before it saves the new
session. The save that creates the row refuses a taken key anyway (``CreateError``, and
``create()`` draws another), and 32 random characters from 36 do not repeat in practice, so the
question costs a round trip and protects nothing.
"""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils.crypto import get_random_string


class NewKeyUnasked:
    """Draws a new session's key without asking whether it is taken (the module's docstring)."""

    def _get_new_session_key(self) -> str:
        return get_random_string(32, VALID_KEY_CHARS)


class SessionStore(NewKeyUnasked, DatabaseSessionStore):
    pass
