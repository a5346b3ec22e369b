from django.conf import settings

# Every dynamic page may show patient data, so none of them may be kept by a browser or proxy.
_NO_STORE = "no-store, max-age=0"


class SecurityHeadersMiddleware:
    """Adds the headers Django 5.2 does not set itself: a strict Content-Security-Policy (the
    templates carry no inline script or style) and ``Cache-Control: no-store`` on everything that
    is not a static asset."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"
        )
        if not request.path.startswith(settings.STATIC_URL):
            response.headers["Cache-Control"] = _NO_STORE
            response.headers.setdefault("Pragma", "no-cache")
        return response
