"""Every string of the interface is translated into every language of the portal (issue 12):
regenerating the catalogs from the sources, as ``makemessages`` does, must find no string the
committed catalogs lack, and leave no empty or fuzzy translation; the compiled catalogs must be
those of the committed ones. Both domains: ``django`` (Python and templates) and ``djangojs``
(the scripts in ``static/js``, served by Django's JavaScript catalog)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = [code for code, _name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]
DOMAINS = ("django", "djangojs")
# What makemessages reads: the apps, templates, settings and scripts; not the tests, the
# benchmarks or collected static files (var/).
IGNORED = (".venv", "bench", "tests", "var", "node_modules")
_ENTRY = re.compile(r'^msgid "', re.M)


def _gettext_tools() -> None:
    missing = [
        tool for tool in ("xgettext", "msgmerge", "msgattrib", "msgfmt") if not shutil.which(tool)
    ]
    require_service(not missing, f"gettext's tools are not installed ({', '.join(missing)})")


def _entries(tool_output: str) -> list[str]:
    """The msgids of a PO text, without its header (the entry whose msgid is empty)."""
    blocks = [block for block in tool_output.split("\n\n") if _ENTRY.search(block)]
    return [block for block in blocks if not re.search(r'^msgid ""\nmsgstr "', block, re.M)]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """A copy of the sources whose catalogs makemessages has brought up to date."""
    _gettext_tools()
    copy = tmp_path_factory.mktemp("catalogs") / "portal"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*IGNORED, "__pycache__", ".git"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_ENV_FILE": "",
        "DEBUG": "true",
        "PORTAL_VAR_DIR": str(copy / "var"),
    }
    for name in ("DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    for domain in DOMAINS:
        command = [sys.executable, "manage.py", "makemessages", "--no-obsolete", "-v", "0"]
        command += [f"--domain={domain}", *(f"--locale={code}" for code in LANGUAGES)]
        command += [f"--ignore={name}" for name in IGNORED]
        subprocess.run(command, cwd=copy, env=env, check=True, capture_output=True, text=True)
    return copy


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_string_is_translated(regenerated, language, domain):
    catalog = regenerated / "locale" / language / "LC_MESSAGES" / f"{domain}.po"
    untranslated = subprocess.run(
        ["msgattrib", "--untranslated", "--no-obsolete", str(catalog)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    fuzzy = subprocess.run(
        ["msgattrib", "--only-fuzzy", "--no-obsolete", str(catalog)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip

    missing = _entries(untranslated)
    assert not missing, (
        f"{len(missing)} string(s) without a {language} translation; run makemessages and "
        f"translate them in locale/{language}/LC_MESSAGES/{domain}.po:\n\n"
        + "\n\n".join(missing[:10])
    )
    unsure = _entries(fuzzy)
    assert not unsure, f"{len(unsure)} fuzzy {language} translation(s):\n\n" + "\n\n".join(
        unsure[:10]
    )


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalog_is_the_committed_one(tmp_path, language, domain):
    """The portal reads the compiled .mo: one compiled from an older .po would miss strings."""
    _gettext_tools()
    messages = ROOT / "locale" / language / "LC_MESSAGES"
    compiled = tmp_path / f"{domain}.mo"
    subprocess.run(
        ["msgfmt", "--check", "-o", str(compiled), str(messages / f"{domain}.po")],
        check=True, capture_output=True,
    )  # fmt: skip
    assert compiled.read_bytes() == (messages / f"{domain}.mo").read_bytes(), (
        f"locale/{language}/LC_MESSAGES/{domain}.mo is not compiled from its .po: run "
        "`manage.py compilemessages`"
    )
