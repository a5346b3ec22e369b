# Read by gunicorn from the working directory: `gunicorn` alone serves the portal.
import os

wsgi_app = "portal.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Sync workers: for this Django app several times faster than ASGI on the same machine.
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
accesslog = "-"
logger_class = "portal.gunicorn_logging.MaskingLogger"
# The TLS proxy in front sets X-Forwarded-Proto; only trust it from the proxy's network.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
