"""The portal's authentication backend: Django's, with the user of a logged-in session
remembered (``portal.decisions``) instead of read for every request.

Every page of a session asks who its user is. The answer rests on the accounts alone (the user's
row: active or not, their password, whose digest the session carries), so it is remembered with
the accounts' generation (``scope=ACCOUNTS``): deactivating the user, changing their password or
anything else saved on them moves it on, and the next request reads the user again and ends the
session as Django would. An API token's verdict (``accounts.authentication``) holds its user the
same way. Passwords are checked exactly as by Django's ``ModelBackend``.
"""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend

from accounts.models import User
from portal import decisions

# Its dotted path, as settings.AUTHENTICATION_BACKENDS names it and sessions store it.
PORTAL_BACKEND = "accounts.backends.PortalBackend"


class PortalBackend(ModelBackend):
    def get_user(self, user_id) -> User | None:
        def read() -> tuple[User | None, None]:
            return super(PortalBackend, self).get_user(user_id), None

        user: User | None = decisions.remember(
            f"session-user:{user_id}", read, scope=decisions.ACCOUNTS
        )
        return user
