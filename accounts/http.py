"""Request types the apps' views share."""

from django.http import HttpRequest

from accounts.models import User


class AuthenticatedRequest(HttpRequest):
    """A request past the login (``login_required``, or an API token): its user is a User, never
    an AnonymousUser. For type checking only: Django builds plain HttpRequests."""

    user: User
