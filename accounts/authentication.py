from datetime import datetime

from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts.models import ApiToken
from accounts.policy import needs_two_factor
from portal import decisions
from portal.digests import candidate_digests, secret_digest
from portal.once import first_in_period

# The HMAC purpose label of API tokens, not a secret.
TOKEN_PURPOSE = "api-token"  # noqa: S105


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token <secret>``. The secret is looked up by its HMAC digest; the database
    holds no usable token. A token counts until it expires or lies unused for too long
    (``ApiToken.ends_at``), and only if it was issued with a one-time code where its user has
    or must have two-factor authentication (``accounts.policy``): a token obtained with the
    password alone, before the organization required a code, stops working then. The verdict is
    remembered (``portal.decisions``) until anything it depends on changes."""

    keyword = "Token"

    def authenticate(self, request):
        secret = self._secret(request)
        if secret is None:
            return None
        digests = candidate_digests(secret, purpose=TOKEN_PURPOSE)
        token, refusal = decisions.remember(
            _decision_key(digests[0]), lambda: _check_token(digests), scope=decisions.ACCOUNTS
        )
        if token is None:
            # A token is answered without a refusal, and a refusal without a token.
            raise exceptions.AuthenticationFailed(refusal)
        # At most one write per token in five minutes, whatever the number of requests.
        if first_in_period(f"api-token-used:{token.pk}", 300):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword

    def decision_key(self, request) -> str | None:
        """The key the verdict on the request's token is remembered under (``portal.decisions``),
        for a view that asks the cache for it ahead of authenticating; None without a token of
        this scheme, or with a header that authenticating refuses."""
        try:
            secret = self._secret(request)
        except exceptions.AuthenticationFailed:
            return None
        return None if secret is None else token_decision_key(secret)

    def _secret(self, request) -> str | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header.")
        try:
            return header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token header.") from exc


def token_decision_key(secret: str) -> str:
    """The key the verdict on this token is remembered under (``portal.decisions``), for a
    request that asks the cache for it ahead of authenticating (``decisions.prefetch``)."""
    return _decision_key(secret_digest(secret, purpose=TOKEN_PURPOSE))


def _decision_key(digest: str) -> str:
    return f"api-token:{decisions.digest(digest)}"


def _check_token(digests: list[str]) -> tuple[tuple[ApiToken | None, str], datetime | None]:
    """The token of one of these digests and why it is refused ("" when it is not), and until
    when that answer holds."""
    # A refusal is not remembered (ends now): unknown tokens must not fill the cache.
    token = ApiToken.objects.select_related("user").filter(digest__in=digests).first()
    now = timezone.now()
    if token is None or not token.user.is_active or not token.is_live(now):
        return (None, "Invalid or expired token."), now
    if not token.two_factor_verified and needs_two_factor(token.user):
        return (
            None,
            "This token was issued without two-factor authentication, which this account "
            "requires: request a new token with the current code as otp_token.",
        ), now
    return (token, ""), token.ends_at


class BearerTokenAuthentication(ApiTokenAuthentication):
    """The same API tokens sent as ``Authorization: Bearer <secret>``, as DICOMweb viewers
    (OHIF) send the token they are given."""

    keyword = "Bearer"
