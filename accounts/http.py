"""Request types the apps' views share, and the user of an API request."""

from django.http import HttpRequest
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

from accounts.models import User


class AuthenticatedRequest(HttpRequest):
    """A request past the login (``login_required``, or an API token): its user is a User, never
    an AnonymousUser. For type checking only: Django builds plain HttpRequests."""

    user: User


def api_user(request: Request) -> User:
    """The caller of a REST API view behind IsAuthenticated (the API's default: every view but
    the token exchange), which has refused an anonymous caller before the view runs."""
    user = request.user
    if not user.is_authenticated:
        raise NotAuthenticated
    return user
