"""One import namespace: the wheel installs `spark_integrations` alone, each module has one name.

Generic top-level names (`settings`, `tasks`, `store`) would collide with other packages and with
plugins; these checks hold the layout the contract gives (the repository keeps its top-level
folders, the installed package is `spark_integrations`).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.unit.commands import run

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
# The repository's top-level modules and packages: each would be importable on its own name if
# the repository root were put on sys.path; installed, each is a module of spark_integrations.
OLD_TOP = frozenset(
    [p.stem for p in ROOT.glob("*.py")]
    + [p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in {"tests", "bench"}]
)


def test_the_repository_keeps_its_top_level_layout() -> None:
    assert {
        "settings",
        "errors",
        "constants",
        "celeryconfig",
        "tasks",
        "store",
        "workers",
    } <= OLD_TOP
    assert {
        "connectors",
        "migrations",
        "gateway",
        "sandbox",
        "coordination",
        "destinations",
    } <= OLD_TOP


def _source_copy(into: Path) -> Path:
    """The checkout's files as git sees them (tracked, and untracked but not ignored), copied:
    setuptools builds in the source's own build/ folder, whose leftovers (a module since moved)
    would otherwise reach the wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def test_the_wheel_installs_only_the_namespace(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "src")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert tops - dist_info == {"spark_integrations"}, sorted(tops)
    assert not [n for n in names if "/tests/" in n or "/bench/" in n or "/docker/" in n]
    for needed in (
        "spark_integrations/celeryconfig.py",
        "spark_integrations/settings.py",
        "spark_integrations/py.typed",
        "spark_integrations/migrations/script.py.mako",
        "spark_integrations/migrations/versions/0001_initial_store.py",
        "spark_integrations/workers/cli.py",
    ):
        assert needed in names, needed
    # Every package of the repository is in the wheel (the package list is explicit).
    for init in ROOT.rglob("__init__.py"):
        relative = init.relative_to(ROOT)
        if relative.parts[0] in OLD_TOP:
            assert f"spark_integrations/{relative.as_posix()}" in names, relative
    # ... and nothing else: every module in it has its source in the checkout.
    for name in names:
        if name.startswith("spark_integrations/") and name.endswith(".py"):
            assert (ROOT / name.removeprefix("spark_integrations/")).is_file(), name
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    targets = [line.split("=", 1)[1].strip() for line in text.splitlines() if "=" in line]
    assert targets and all(t.startswith("spark_integrations.") for t in targets), text


def test_no_module_is_imported_under_a_second_name(tmp_path: Path) -> None:
    """Importing every entry point leaves no old top-level name in ``sys.modules``."""
    probe = """
import sys
import spark_integrations.workers.app
import spark_integrations.workers.cli
import spark_integrations.gateway.app
import spark_integrations.migrations.runner
import spark_integrations.sandbox.server
from spark_integrations.workers.app import app
app.loader.import_default_modules()
from spark_integrations.connectors.registry import discover_connectors
discover_connectors()
from spark_integrations.destinations.base import destination_kinds
destination_kinds()
old = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))
print(",".join(old))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_INTEGRATIONS_")}
    env["SPARK_INTEGRATIONS_HOME"] = str(tmp_path / "home")
    # -P: the working folder is not put on sys.path, as for an installed command.
    done = run([sys.executable, "-P", "-c", probe, *sorted(OLD_TOP)], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"imported under a second name: {done.stdout.strip()}"


def _old_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found += [
            f"{path.relative_to(ROOT)}:{node.lineno} {n}"
            for n in names
            if n.split(".")[0] in OLD_TOP
        ]
    return found


def test_code_tests_and_benchmarks_import_the_namespace() -> None:
    files = [
        p
        for p in ROOT.rglob("*.py")
        if not {".venv", ".typecheck", "build", ".git"} & set(p.relative_to(ROOT).parts)
    ]
    assert len(files) > 100
    offenders = [hit for path in files for hit in _old_imports(path)]
    assert not offenders, offenders
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```python")[1:]
    assert blocks, "the README has a Python example"
    for block in blocks:
        code = block.split("```", 1)[0]
        for line in code.splitlines():
            words = line.split()
            if words[:1] in (["from"], ["import"]) and len(words) > 1:
                assert words[1].split(".")[0] not in OLD_TOP, line


def test_mypy_sees_across_packages(tmp_path: Path) -> None:
    """A cross-package type error fails mypy: our imports are not read as ``Any``."""
    link = ROOT / ".typecheck" / "spark_integrations"
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if not link.exists() or mypy is None:
        if IN_CI:
            pytest.fail("make install links .typecheck/spark_integrations and installs mypy")
        pytest.skip("run make install first (it links .typecheck/spark_integrations)")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from spark_integrations.settings import load\n"
        "from spark_integrations.errors import IntegrationError\n"
        "settings: int = load()\n"
        "error: str = IntegrationError('x')\n"
    )
    done = subprocess.run(
        [
            mypy,
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "c"),
            str(probe),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'expression has type "Settings", variable has type "int"' in done.stdout, done.stdout
    assert 'expression has type "IntegrationError", variable has type "str"' in done.stdout, (
        done.stdout
    )
