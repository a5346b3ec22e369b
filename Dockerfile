# OHIF, the diagnostic viewer: the release pinned in install_ohif.py, from the npm registry; the
# portal's stage checks its integrity hash when it unpacks it.
FROM node:20-slim AS ohif
WORKDIR /ohif
COPY viewers/management/commands/install_ohif.py ./
RUN npm pack "@ohif/app@$(sed -n 's/^VERSION = "\(.*\)"$/\1/p' install_ohif.py)" \
    --pack-destination /ohif

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN useradd --system --create-home --home-dir /home/portal portal
COPY pyproject.toml README.md ./
COPY portal ./portal
COPY accounts ./accounts
COPY studies ./studies
COPY audit ./audit
RUN pip install .
COPY . .
COPY --from=ohif /ohif/ /tmp/ohif/
# collectstatic needs settings that import; the real key comes from the environment at run time.
RUN SECRET_KEY=build-only AUDIT_KEY=build-only-audit-key-not-used-at-run-time DEBUG=false \
    ALLOWED_HOSTS=build python manage.py collectstatic --noinput \
    && SECRET_KEY=build-only AUDIT_KEY=build-only-audit-key-not-used-at-run-time DEBUG=false \
    ALLOWED_HOSTS=build python manage.py install_ohif --tarball /tmp/ohif/ohif-app-*.tgz \
    && rm -rf /tmp/ohif && mkdir -p /app/var && chown -R portal /app/var

USER portal
EXPOSE 8000
# Settings in gunicorn.conf.py: sync workers, masked access log.
CMD ["gunicorn"]
