"""Refusing to serve with a configuration that ``manage.py check`` refuses.

Django runs its system checks before ``runserver`` and ``migrate``, but gunicorn runs none, and
Celery runs them and ignores what they find. The web process (``portal.wsgi``) and the worker
(``portal.celery``) call :func:`refuse_to_start_on_check_errors` instead, so that an error that
keeps ``migrate`` from running (for example a console email backend with ``DEBUG`` off, which
would write every link to the log) also keeps them from starting.
"""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def refuse_to_start_on_check_errors(process: str) -> None:
    """Raise ImproperlyConfigured, naming each error and its hint, if a system check finds one
    (warnings are left to ``manage.py check --deploy``)."""
    errors = [
        message
        for message in checks.run_checks()
        if message.level >= checks.ERROR and not message.is_silenced()
    ]
    if errors:
        found = "\n".join(str(error) for error in errors)
        raise ImproperlyConfigured(
            f"The {process} refuses to start: the system checks found errors.\n{found}"
        )
