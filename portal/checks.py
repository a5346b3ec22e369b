from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def shared_cache_check(app_configs, **kwargs):
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
