"""The README and docs/ link only to what a clone holds: every relative link resolves to a file
of the repository (the documentation once pointed at ../shared, which a clone does not have)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and [text]: target, skipping web addresses, mail and in-page anchors.
LINK = re.compile(r"\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def relative_links(document: Path) -> list[str]:
    targets = [a or b for a, b in LINK.findall(document.read_text(encoding="utf-8"))]
    return [
        target
        for target in targets
        if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves_inside_the_repository(document):
    for target in relative_links(document):
        path = (document.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{document.name} links outside the clone: {target}"
        assert path.exists(), f"{document.name} links to a missing file: {target}"


def test_the_readme_links_the_project_documentation():
    links = set(relative_links(ROOT / "README.md"))
    assert {"docs/ARCHITECTURE.md", "docs/API.md", "docs/CONVENTIONS.md"} <= links
