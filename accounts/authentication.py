from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts.models import ApiToken
from accounts.tokens import candidate_digests

# The HMAC purpose label of API tokens, not a secret.
TOKEN_PURPOSE = "api-token"  # noqa: S105


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token <secret>``. The secret is looked up by its HMAC digest; the database
    holds no usable token."""

    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header.")
        try:
            secret = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token header.") from exc
        token = (
            ApiToken.objects.select_related("user")
            .filter(digest__in=candidate_digests(secret, purpose=TOKEN_PURPOSE))
            .first()
        )
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 300:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


class BearerTokenAuthentication(ApiTokenAuthentication):
    """The same API tokens sent as ``Authorization: Bearer <secret>``, as DICOMweb viewers
    (OHIF) send the token they are given."""

    keyword = "Bearer"
