"""A plugin package outside the repository registers a declared connector that passes the
contract suite: the guide's package (docs/writing-a-connector.md, section 6) is built in a
temporary folder, installed into a temporary environment (a ``--target`` folder put on
``PYTHONPATH``, offline, with this environment's setuptools), and then, in fresh processes,
``connectors list --json`` shows its connector and pytest runs the suite on it through the entry
point."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.commands import run, run_pytest
from tests.unit.test_guide import guide_files

IN_CI = os.environ.get("CI", "").lower() == "true"
BIN = Path(sys.executable).parent
# Where each of the guide's files goes in the package.
LAYOUT = {
    "pyproject.toml": "pyproject.toml",
    "acme_tasks_connector/__init__.py": "acme_tasks_connector/__init__.py",
    "acme_tasks.yaml": "acme_tasks_connector/acme_tasks.yaml",
    "tests/test_acme_tasks.py": "tests/test_acme_tasks.py",
    "recordings/acme_tasks.yaml": "tests/recordings/acme_tasks.yaml",
}


def _can_build_offline() -> bool:
    """setuptools builds wheels itself from 70.1 on; before, it needs the wheel package."""
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The package's source folder, and the environment in which it is installed."""
    if not _can_build_offline():
        message = "building the plugin offline needs wheel or setuptools>=70.1 (make install)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("plugin")
    source = root / "acme-tasks"
    files = guide_files()
    for name, where in LAYOUT.items():
        (source / where).parent.mkdir(parents=True, exist_ok=True)
        (source / where).write_text(files[name], encoding="utf-8")
    (source / "docs").mkdir()
    (source / "docs" / "acme_tasks.md").write_text("# Acme Tasks\n", encoding="utf-8")
    target = root / "site"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    assert (target / "acme_tasks_connector" / "acme_tasks.yaml").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_INTEGRATIONS_")}
    env["SPARK_INTEGRATIONS_HOME"] = str(root / "home")
    env["PYTHONPATH"] = str(target)
    return source, env


def test_the_installed_plugin_is_listed(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    _, env = installed
    done = run(
        [str(BIN / "spark-integrations"), "connectors", "list", "--json"], cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "broken" not in done.stderr, done.stderr
    listed = {row["name"]: row for row in json.loads(done.stdout)}
    assert "sandbox" in listed
    acme = listed["acme_tasks"]
    assert acme["title"] == "Acme Tasks"
    assert acme["auth_kinds"] == ["api_key"]
    assert [a["name"] for a in acme["actions"]] == ["create_task", "complete_task"]
    (stream,) = acme["streams"]
    assert stream["name"] == "tasks"
    assert {"name": "project", "required": True, "type": "string"} in [
        {k: p[k] for k in ("name", "required", "type")} for p in stream["params"]
    ]


def test_the_installed_plugin_passes_the_contract_suite(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    source, env = installed
    # Run from another folder, so the package is imported from where it was installed.
    done = run_pytest(tmp_path, str(source / "tests"), env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and "skipped" not in summary, summary
    assert int(summary.split()[0]) >= 20, summary
    where = run(
        [sys.executable, "-c", "import acme_tasks_connector as m; print(m.__file__)"],
        cwd=tmp_path,
        env=env,
    )
    assert where.stdout.strip().startswith(env["PYTHONPATH"]), where.stdout + where.stderr
