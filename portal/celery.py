"""The Celery application. Settings come from Django's (``CELERY_*``); with no broker configured
tasks run eagerly in the web process, which is the embedded set-up of ``make run``."""

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init
from django.core.exceptions import ImproperlyConfigured

from portal.startup import refuse_to_start_on_check_errors

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _refuse_to_start_on_check_errors(**kwargs: object) -> None:
    # Celery's Django fix-up runs the system checks when a worker starts and ignores what they
    # find; a worker delivers the messages, so it is the last process that may run without them.
    # SystemExit, because Celery logs and swallows a signal handler's exceptions.
    try:
        refuse_to_start_on_check_errors("Celery worker")
    except ImproperlyConfigured as exc:
        raise SystemExit(str(exc)) from exc


@worker_process_init.connect
def _freeze_what_is_loaded(**kwargs: object) -> None:
    # Each process of the worker's pool, forked once the worker has loaded Django and the
    # tasks, leaves what it holds out of Python's collections (portal.preload).
    from portal.preload import freeze_what_is_loaded

    freeze_what_is_loaded()
