"""The direction imports run in (STYLE.md): each package enters only the floors below it.

store <- connectors <- tasks <- workers and gateway; coordination and destinations in between;
the shared modules (constants, errors, forks, settings, ...) sit beside them all, and the
sandbox imports nothing of the fleet. Read from the source with ``ast``: a violation anywhere in
a module counts, even in an import inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The shared modules at the repository's top level (constants, errors, forks, settings, ...):
# every package may import them, but not the Celery app's configuration nor doctor's checks.
SHARED = {p.stem for p in ROOT.glob("*.py")} - {"celeryconfig", "checks"}
# What each package may import of ours, beside itself and the shared modules.
ALLOWED: dict[str, set[str]] = {
    "store": set(),
    "coordination": set(),
    "connectors": set(),
    "destinations": {"connectors", "store"},
    "tasks": {"connectors", "coordination", "destinations", "store", "webhooks"},
    "gateway": {"checks", "connectors", "coordination", "store", "tasks", "webhooks"},
    "sandbox": set(),
}
# Third-party libraries a package must not use: connectors know HTTP, not Celery or the store.
FORBIDDEN_LIBRARIES = {
    "connectors": {"celery", "kombu", "sqlalchemy", "redis"},
    "coordination": {"celery", "sqlalchemy", "requests"},
    "store": {"celery", "redis", "requests"},
}


def imported(path: Path) -> set[str]:
    """Every module name a file imports (absolute imports only: the fleet uses no others)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_floors_below_it(package: str) -> None:
    allowed = ALLOWED[package] | {package} | (set() if package == "sandbox" else SHARED)
    wrong = set()
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported(path):
            parts = name.split(".")
            if parts[0] != "spark_integrations" or len(parts) < 2:
                continue
            if parts[1] not in allowed:
                wrong.add(f"{path.relative_to(ROOT)} imports {'.'.join(parts[:2])}")
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_LIBRARIES))
def test_a_package_stays_off_the_libraries_of_other_floors(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported(path)
        if name.split(".")[0] in FORBIDDEN_LIBRARIES[package]
    }
    assert not wrong, sorted(wrong)
