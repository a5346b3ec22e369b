"""The development outbox: in DEBUG (and so in demo mode) the messages the portal "sent" are
listed here, with their text, so that a person trying the portal can follow the links and enter
the codes without a mail server or an SMS provider. Everyone sees the messages addressed to
their own email address or mobile number, and those their own shares and guest links caused (so
a sender can follow the link they sent); staff see all. On a real installation (DEBUG off) the
page does not exist."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from notifications.models import Message
from notifications.senders import caused_by

OUTBOX_SIZE = 50


def outbox(request: HttpRequest) -> HttpResponse:
    # Checked before the login redirect, so that a production site does not even reveal the page.
    if not settings.DEBUG:
        raise Http404
    return _outbox(request)


@require_GET
@never_cache
@login_required
def _outbox(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        # login_required has sent an anonymous visitor to the login page already.
        raise Http404
    messages = Message.objects.all()
    if not user.is_staff:
        mine = Q(pk__in=[])
        if user.email:
            mine |= Q(recipient__iexact=user.email)
        if getattr(user, "mobile", ""):
            mine |= Q(recipient=user.mobile)
        messages = messages.filter(mine | caused_by(user))
    return render(
        request,
        "notifications/outbox.html",
        {
            "outbox": messages.order_by("-created_at", "-id")[:OUTBOX_SIZE],
            "sees_all": user.is_staff,
        },
    )
