from django.db import connection
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import path

# The portal's own digest of a token (under SECRET_KEY), so that the anchor finds the same rows.
from guestlinks.tokens import digest_for


def _link_id(token: str) -> int:
    """The link's id by the keyed digest of its token, as the portal stores it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM guestlinks_guestlink WHERE token_digest = %s", [digest_for(token)]
        )
        row = cursor.fetchone()
    if row is None:
        raise Http404
    return row[0]


def link(request, token: str):
    link_id = _link_id(token)
    if request.method == "POST":
        request.session["guest_link"] = link_id
        return HttpResponseRedirect("/studies/anchor/", status=303)
    return HttpResponse(
        '<!doctype html><title>Shared study</title><form method="post">'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">'
        '<button name="action" value="open">Open study</button></form>'
    )


def healthz(_request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("l/<str:token>", link), path("healthz", healthz)]
