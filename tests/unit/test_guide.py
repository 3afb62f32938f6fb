"""The guide's example works as written: docs/writing-a-connector.md's files (the blocks marked
``file=...``), put where ``connectors new`` put its own, pass the contract suite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spark_integrations.connectors.manifest import check_manifest, manifest_schema
from spark_integrations.workers.cli import main
from tests.unit.commands import run_pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "writing-a-connector.md"
_BLOCK = re.compile(r"^```(\w+) file=(\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def guide_files() -> dict[str, str]:
    """The guide's files: {path: text}, from its fenced blocks marked ``file=PATH``."""
    return {path: text for _, path, text in _BLOCK.findall(GUIDE.read_text(encoding="utf-8"))}


def test_the_guide_holds_its_example() -> None:
    assert set(guide_files()) == {
        "acme_tasks.yaml",
        "recordings/acme_tasks.yaml",
        "test_acme_tasks.py",
        "pyproject.toml",
        "acme_tasks_connector/__init__.py",
        "tests/test_acme_tasks.py",
    }


def test_the_guide_explains_every_manifest_key() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    missing = [key for key in manifest_schema()["properties"] if f"`{key}`" not in text]
    assert not missing, missing


def test_the_guides_connector_passes_the_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As the guide goes: scaffold, then replace the scaffold's files with the guide's.
    main(["connectors", "new", "acme_tasks", "--dir", str(tmp_path)])
    capsys.readouterr()
    files = guide_files()
    for name in ("acme_tasks.yaml", "recordings/acme_tasks.yaml", "test_acme_tasks.py"):
        (tmp_path / name).write_text(files[name], encoding="utf-8")
    assert check_manifest(tmp_path / "acme_tasks.yaml") == []
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in [\d.]+s", summary), summary
    assert int(summary.split()[0]) >= 20, summary
