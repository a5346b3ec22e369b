# The two commands of the README: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# `make run` is the embedded demo: SQLite, Celery tasks in-process, files under var/, messages
# to the console, whatever the shell's environment says; `make run PORT=8001` serves elsewhere
# (links in emails and dialogs follow). It also writes these settings to .env, which
# manage.py reads, so commands run by hand afterwards work on the demo.
PORT ?= 8000
DICOM_PORT ?= 11112
# OHIF, the diagnostic viewer, on its own origin (the next port), where npm could install it.
OHIF_PORT ?= $(shell echo $$(($(PORT) + 1)))
RUN_ENV := DEBUG=true DEMO_MODE=true DATABASE_URL=sqlite:///$(CURDIR)/var/portal.sqlite3 \
	CELERY_BROKER_URL= CACHE_URL= EMAIL_HOST= PORTAL_VAR_DIR=$(CURDIR)/var \
	SITE_URL=http://127.0.0.1:$(PORT) OHIF_URL=http://127.0.0.1:$(OHIF_PORT)

.PHONY: run test install ohif axe migrate demo check lint typecheck format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ohif axe

# The pinned OHIF release from the npm registry, checked and unpacked into var/ohif (quick once
# installed); without npm, a note, and the portal runs without OHIF.
ohif: $(STAMP)
	$(BIN)/python manage.py install_ohif --if-npm --settings=tests.settings

# The pinned axe-core, which the accessibility browser test injects into pages, checked and
# unpacked into var/axe-core the same way (portal/npm.py).
axe: $(STAMP)
	$(BIN)/python manage.py install_axe --if-npm --settings=tests.settings

# The DICOM listener runs in the background beside the web server and stops with it (Ctrl-C
# stops both; the EXIT trap also covers the web server ending on its own).
# The demo's database, with the settings of `make run`: `make migrate` brings its tables up to
# date, `make demo` also loads the demo organizations, accounts and studies (once).
migrate: $(STAMP)
	mkdir -p var
	$(RUN_ENV) $(BIN)/python -m portal.demo_env
	$(RUN_ENV) $(BIN)/python manage.py migrate --noinput

demo: migrate
	$(RUN_ENV) $(BIN)/python manage.py seed_demo

run: ohif demo
	@echo "Starting the DICOM listener on 127.0.0.1:$(DICOM_PORT) beside the web server; Ctrl-C stops both."
	$(RUN_ENV) $(BIN)/python manage.py dicom_listener --host 127.0.0.1 --port $(DICOM_PORT) & \
	listener=$$!; ohif=; \
	if [ -f var/ohif/index.html ]; then \
		echo "Serving OHIF on http://127.0.0.1:$(OHIF_PORT) (its own origin)."; \
		$(RUN_ENV) $(BIN)/gunicorn -c gunicorn.conf.py -b 127.0.0.1:$(OHIF_PORT) -w 2 --threads 8 \
			viewers.ohif:application & ohif=$$!; \
	fi; \
	trap 'kill $$listener $$ohif 2>/dev/null; wait $$listener $$ohif 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	$(RUN_ENV) $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# The suite runs in one process per core (pytest-xdist), at most four: the tests that flush a
# Redis database have one each, 12 to 15 (tests/conftest.py).
test: $(STAMP) ohif axe
	$(BIN)/python manage.py makemigrations --check --dry-run --settings=tests.settings > /dev/null
	$(BIN)/python -m pytest -n auto --maxprocesses 4

# The static checks CI runs before the suite: ruff, mypy, Django's system checks, and migrations
# in step with the models.
check: lint typecheck
	$(BIN)/python manage.py check --settings=tests.settings
	$(BIN)/python manage.py makemigrations --check --dry-run --settings=tests.settings > /dev/null

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m pytest bench -p no:randomly -o testpaths=bench

clean:
	rm -rf $(VENV) var .benchmarks
