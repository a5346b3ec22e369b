"""Responses the apps share."""

from django.http import HttpResponseRedirect


class SeeOther(HttpResponseRedirect):
    """303: after a POST the browser follows with a GET."""

    status_code = 303
