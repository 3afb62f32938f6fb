"""The sandbox shares no code with the fleet: it imports only the standard library and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SANDBOX = Path(__file__).resolve().parents[3] / "sandbox"


def _top(module: str) -> str:
    """``spark_integrations.sandbox...`` is the sandbox; any other module of the fleet is itself."""
    if module == "spark_integrations.sandbox" or module.startswith("spark_integrations.sandbox."):
        return "sandbox"
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "spark_integrations" else parts[0]


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports; the sandbox itself counts as "sandbox"."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(_top(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("sandbox" if node.level else _top(node.module or ""))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and getattr(node.func, "id", getattr(node.func, "attr", ""))
            in ("import_module", "__import__")
        ):
            raise AssertionError(f"{path.name} imports dynamically; the test cannot check it")
    return names


def test_sandbox_imports_only_the_standard_library() -> None:
    files = sorted(SANDBOX.rglob("*.py"))
    assert len(files) >= 8
    allowed = set(sys.stdlib_module_names) | {"sandbox", "__future__"}
    for path in files:
        foreign = imported_modules(path) - allowed
        assert not foreign, f"{path.relative_to(SANDBOX.parent)} imports {sorted(foreign)}"
