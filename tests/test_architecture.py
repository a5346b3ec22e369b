"""The arrows of docs/ARCHITECTURE.md, enforced: a script over every module of the apps reads
their imports (Python's ``ast``, module-level and function-level alike) and fails on an import one
app may not make of another, and on an import cycle between modules (module-level imports, the
ones that run when a module is loaded)."""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

# Every app may import these: the project package's shared infrastructure, the audit trail and
# the outbox.
SHARED = {"portal", "audit", "notifications"}

# Whom each app may import besides itself, as docs/ARCHITECTURE.md draws it: feature apps ->
# studies -> accounts, dicomweb -> viewers, everyone -> audit, notifications and portal. audit and
# notifications import no feature app (notifications audits what it delivers), and portal none.
ALLOWED_ARROWS: dict[str, set[str]] = {
    "portal": set(),
    "audit": {"portal"},
    "notifications": {"portal", "audit"},
    "accounts": SHARED,
    "studies": {"accounts"} | SHARED,
    "sharing": {"studies", "accounts"} | SHARED,
    "guestlinks": {"studies", "accounts"} | SHARED,
    "viewers": {"studies", "accounts"} | SHARED,
    "dicomweb": {"viewers", "studies", "accounts"} | SHARED,
    "dimse": {"studies", "accounts"} | SHARED,
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    module_level: bool

    def __str__(self) -> str:
        where = "" if self.module_level else " (in a function)"
        return f"{self.importer} imports {self.imported}, line {self.line}{where}"


def app_of(module: str) -> str:
    return module.partition(".")[0]


def project_sources(apps) -> dict[str, tuple[str, bool]]:
    """Every module of the apps: its dotted name -> (source, whether it is a package)."""
    sources = {}
    for app in apps:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            sources[name] = (path.read_text(), is_package)
    return sources


def _function_level_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(child) for child in ast.walk(node) if child is not node)
    return inside


def imports_of(sources: dict[str, tuple[str, bool]]) -> list[Import]:
    """The imports of these modules that name another of them. ``from package import name``
    names the module ``package.name`` where there is one, else ``package``."""
    found = []
    for importer, (source, is_package) in sources.items():
        tree = ast.parse(source)
        in_functions = _function_level_nodes(tree)
        package = importer if is_package else importer.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base
                    for alias in node.names
                ]
            else:
                continue
            for target in dict.fromkeys(targets):
                imported = _known_module(target, sources)
                if imported is not None and imported != importer:
                    found.append(
                        Import(importer, imported, node.lineno, id(node) not in in_functions)
                    )
    return found


def _known_module(name: str, sources) -> str | None:
    while name and name not in sources:
        name = name.rpartition(".")[0]
    return name or None


def forbidden_arrows(imports: list[Import], allowed: dict[str, set[str]]) -> list[str]:
    return [
        str(imported)
        for imported in imports
        if app_of(imported.imported) != app_of(imported.importer)
        and app_of(imported.imported) not in allowed.get(app_of(imported.importer), set())
    ]


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """The groups of modules that import one another at module level, each sorted: modules
    that reach each other through the imports (a few hundred modules: reachability is enough)."""
    graph: dict[str, set[str]] = {}
    for imported in imports:
        if imported.module_level:
            graph.setdefault(imported.importer, set()).add(imported.imported)
    reach = {module: _reachable(graph, module) for module in graph}
    groups = {
        frozenset({module} | {other for other in reach[module] if module in reach.get(other, ())})
        for module in graph
        if module in reach[module]
    }
    return sorted(sorted(group) for group in groups)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, directly or through others."""
    seen: set[str] = set()
    pending = list(graph.get(start, ()))
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(graph.get(module, ()))
    return seen


# --- The project ---------------------------------------------------------------------------


def project_apps() -> list[str]:
    return [app for app in settings.INSTALLED_APPS if (ROOT / app / "__init__.py").exists()]


def test_every_app_of_the_project_has_its_arrows():
    assert sorted(ALLOWED_ARROWS) == sorted(project_apps())


@pytest.fixture(scope="module")
def project_imports() -> list[Import]:
    """Every import of the project's apps, read once for the tests below."""
    return imports_of(project_sources(project_apps()))


def test_no_app_imports_what_architecture_forbids(project_imports):
    assert forbidden_arrows(project_imports, ALLOWED_ARROWS) == []


def test_no_import_cycle_between_modules(project_imports):
    assert import_cycles(project_imports) == []


# --- The checker, on a small made-up project -----------------------------------------------

MADE_UP_ARROWS = {"base": set(), "feature": {"base"}}


def made_up(**modules: str) -> dict[str, tuple[str, bool]]:
    """Modules by dotted name (double underscores for dots); ``base`` and ``feature`` are
    packages."""
    sources = {"base": ("", True), "feature": ("", True)}
    for name, source in modules.items():
        sources[name.replace("__", ".")] = (source, False)
    return sources


def test_checker_allows_the_arrows_given():
    sources = made_up(
        base__models="",
        feature__views="from base.models import Thing\nfrom . import helpers\n",
        feature__helpers="import base.models\n",
    )
    imports = imports_of(sources)
    assert forbidden_arrows(imports, MADE_UP_ARROWS) == []
    assert import_cycles(imports) == []


def test_checker_finds_a_forbidden_arrow_even_inside_a_function():
    sources = made_up(
        base__models="",
        base__selectors="def labels():\n    from feature.views import label\n    return label\n",
        feature__views="from base import models\n",
    )
    assert forbidden_arrows(imports_of(sources), MADE_UP_ARROWS) == [
        "base.selectors imports feature.views, line 2 (in a function)"
    ]


def test_checker_finds_a_cycle_of_module_level_imports():
    sources = made_up(
        feature__services="from feature.tasks import publish\n",
        feature__tasks="from .services import erase\n",
        feature__views="from feature import services\n",
    )
    imports = imports_of(sources)
    assert import_cycles(imports) == [["feature.services", "feature.tasks"]]


def test_checker_lets_a_function_level_import_close_no_cycle():
    sources = made_up(
        feature__services="def publish():\n    from feature.tasks import deliver\n",
        feature__tasks="from feature.services import erase\n",
    )
    assert import_cycles(imports_of(sources)) == []
