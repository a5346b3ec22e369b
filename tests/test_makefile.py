"""The Makefile's targets do what their names say: each one, dry-run (`make -n`), runs the tool it
is named for. A new target must say here what it runs."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# target -> what its dry run must include
EXPECTED_COMMANDS = {
    "install": ["pip install", "manage.py install_ohif", "manage.py install_axe"],
    "ohif": ["manage.py install_ohif"],
    "axe": ["manage.py install_axe"],
    "migrate": ["manage.py migrate"],
    "demo": ["manage.py migrate", "manage.py seed_demo"],
    "run": ["manage.py migrate", "manage.py seed_demo", "manage.py runserver"],
    "test": ["manage.py install_axe", "makemigrations --check", "pytest"],
    "check": [
        "ruff check",
        "ruff format --check",
        "mypy",
        "manage.py check",
        "makemigrations --check",
    ],
    "lint": ["ruff check", "ruff format --check"],
    "typecheck": ["mypy"],
    "format": ["ruff format", "ruff check --fix"],
    "bench": ["pytest bench"],
    "clean": ["rm -rf .venv"],
}


def phony_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    match = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    assert match, "the Makefile declares its targets .PHONY"
    return set(match.group(1).split())


def test_every_target_is_described_here():
    assert phony_targets() == set(EXPECTED_COMMANDS)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", sorted(EXPECTED_COMMANDS))
def test_target_runs_what_its_name_says(target):
    # -B: as if nothing were built yet (a fresh clone), so the installation steps show too.
    dry_run = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for command in EXPECTED_COMMANDS[target]:
        assert command in dry_run, f"`make {target}` does not run {command!r}:\n{dry_run}"
