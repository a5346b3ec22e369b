import os

from django.core.wsgi import get_wsgi_application

from portal.preload import load_what_requests_use
from portal.startup import refuse_to_start_on_check_errors

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

application = get_wsgi_application()
# gunicorn runs no system checks: serve nothing with a configuration `manage.py check` refuses.
refuse_to_start_on_check_errors("web process")
# Once here rather than in each worker's first request (gunicorn.conf.py preloads the app).
load_what_requests_use()
