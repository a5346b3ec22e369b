"""The portal's URLs plus one stand-in dialog view, so the browser tests can drive a context-menu
item of kind "dialog" end to end the way the Share and Send Link dialogs will work: a fragment
with a form, re-rendered with errors, then a confirmation with a copy button."""

from django.http import HttpResponse
from django.template import engines
from django.urls import path
from django.views.decorators.http import require_http_methods

from portal.urls import urlpatterns as portal_urlpatterns

_FRAGMENT = engines["django"].from_string(
    """
{% if done %}
  <p class="confirmation">Noted for {{ studies|length }} studies.</p>
  <input id="note-summary" readonly value="{{ note }}">
  <button type="button" class="button" data-copy-from="#note-summary">Copy</button>
  <p data-copy-status data-copied-text="Copied."></p>
  <button type="button" class="button" data-dialog-close>Done</button>
{% else %}
  <form method="post" action="{{ request.path }}">
    {% csrf_token %}
    {% for uid in studies %}<input type="hidden" name="study" value="{{ uid }}">{% endfor %}
    <p class="selected-count">{{ studies|length }} studies selected</p>
    {% if error %}<p class="errors" role="alert">{{ error }}</p>{% endif %}
    <label for="note">Note</label> <input id="note" name="note" value="{{ note }}">
    <button type="submit" class="button primary">Save note</button>
  </form>
{% endif %}
"""
)


@require_http_methods(["GET", "POST"])
def note_dialog(request):
    studies = request.GET.getlist("study") or request.POST.getlist("study")
    note = request.POST.get("note", "").strip()
    context = {"studies": studies, "note": note, "done": False, "error": ""}
    status = 200
    if request.method == "POST":
        if note:
            context["done"] = True
        else:
            context["error"] = "Write a note."
            status = 400
    return HttpResponse(_FRAGMENT.render(context, request), status=status)


urlpatterns = [
    path("test-dialogs/note/", note_dialog, name="test_note_dialog"),
    *portal_urlpatterns,
]
