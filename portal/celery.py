"""The Celery application. Settings come from Django's (``CELERY_*``); with no broker configured
tasks run eagerly in the web process, which is the embedded set-up of ``make run``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
