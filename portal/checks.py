from collections.abc import Sequence

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def shared_cache_check(
    app_configs: Sequence[AppConfig] | None, **kwargs: object
) -> list[CheckMessage]:
    """Login throttles and rendered frames live in the cache. A per-process cache gives each
    gunicorn worker its own failure counters, multiplying the guesses an attacker gets."""
    if settings.DEBUG or settings.CACHE_URL:
        return []
    return [
        Warning(
            "CACHE_URL is not set: login throttles are counted per process.",
            hint="Set CACHE_URL to a Redis URL shared by every web process.",
            id="portal.W001",
        )
    ]


@register(Tags.security, deploy=True)
def trusted_proxies_check(
    app_configs: Sequence[AppConfig] | None, **kwargs: object
) -> list[CheckMessage]:
    """Behind a proxy (it sets X-Forwarded-Proto) every request comes from the proxy's address:
    unless the portal knows the proxy, every per-address throttle is shared by all clients, one
    prober locks everyone out, and the audit trail names the proxy instead of the client."""
    if settings.DEBUG or not getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        return []
    if settings.TRUSTED_PROXIES:
        return []
    return [
        Warning(
            "USE_X_FORWARDED_PROTO is on but TRUSTED_PROXIES is empty: every client shares the "
            "proxy's address in the throttles and the audit trail.",
            hint="Set TRUSTED_PROXIES to the reverse proxy's address or network.",
            id="portal.W002",
        )
    ]


@register(Tags.security)
def remembered_decisions_check(
    app_configs: Sequence[AppConfig] | None, **kwargs: object
) -> list[CheckMessage]:
    """A revoked link or removed share stops remembered access decisions through a generation
    held in the cache (portal.decisions). In a per-process cache only the process that made the
    change would notice; the others would go on serving until their decisions end."""
    if settings.ACCESS_DECISION_SECONDS <= 0 or settings.DEBUG or settings.CACHE_URL:
        return []
    return [
        Error(
            "ACCESS_DECISION_SECONDS is set but CACHE_URL is not: a revocation would not reach "
            "the other web processes' remembered decisions.",
            hint="Set CACHE_URL to a Redis URL shared by every web process, or "
            "ACCESS_DECISION_SECONDS=0.",
            id="portal.E001",
        )
    ]
