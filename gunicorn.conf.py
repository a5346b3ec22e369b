# Read by gunicorn from the working directory: `gunicorn` alone serves the portal.
import os

wsgi_app = "portal.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Sync workers: for this Django app several times faster than ASGI on the same machine. By
# default one per core this process may run on (a container's CPU set, not the host's), plus
# one, so that a worker waiting on the database or the cache leaves its core to another. Two per
# core and one, gunicorn's usual advice, served every workload of bench/ 5 to 30 % slower, on
# three machines: the workers' requests take turns on the cores instead of running through.
# A worker is held for the whole of a streamed download (a study's ZIP over a slow line): an
# installation serving many at once raises GUNICORN_WORKERS (README).
workers = int(os.environ.get("GUNICORN_WORKERS", len(os.sched_getaffinity(0)) + 1))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# The application (Django, pydicom, numpy, the image codecs: about 100 MB) is loaded once in
# the master and its pages shared by every worker it forks, instead of once per worker. Nothing
# opens a database or cache connection while loading: each worker makes its own on first use.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").lower() != "false"
accesslog = "-"
logger_class = "portal.gunicorn_logging.MaskingLogger"
# Whose X-Forwarded-Proto (and other forwarding headers) gunicorn believes: the same reverse
# proxies the portal trusts for the client's address (TRUSTED_PROXIES), or FORWARDED_ALLOW_IPS
# if set; with neither, nobody. Never "*": anyone reaching gunicorn directly could then claim
# HTTPS. Gunicorn never takes REMOTE_ADDR from X-Forwarded-For; the portal reads that header
# itself, from trusted proxies only (portal.clients).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", os.environ.get("TRUSTED_PROXIES", ""))


def post_fork(server, worker):
    # A sync worker reports to the master only between requests: a streamed answer reports as
    # it goes (portal.worker_heartbeat), or one longer than the timeout would be cut off.
    from portal import worker_heartbeat

    worker_heartbeat.reports_with(worker.notify)


def post_worker_init(worker):
    # Loaded (here or in the master), the worker leaves what it holds out of Python's
    # collections: a full one scanned it all mid-request (portal.preload).
    from portal.preload import freeze_what_is_loaded

    freeze_what_is_loaded()
