"""``connectors schema`` and ``connectors check FILE`` through the command line's entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spark_integrations.connectors.manifest import manifest_schema
from tests.unit.conftest import run_cli as run

HERE = Path(__file__).parent / "manifests"


def test_schema_prints_the_published_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "connectors", "schema")
    assert code == 0 and json.loads(out) == manifest_schema()


@pytest.mark.parametrize(("file", "name"), [("chat.yaml", "chat"), ("notes.toml", "notes")])
def test_check_says_ok_with_the_name(
    capsys: pytest.CaptureFixture[str], file: str, name: str
) -> None:
    assert run(capsys, "connectors", "check", str(HERE / file)) == (0, f"ok: {name}\n", "")


def test_check_lists_each_problem_on_stderr_and_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbody: xml\nactions: [{name: a, method: GET}]\n")
    code, out, err = run(capsys, "connectors", "check", str(bad))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"{bad}: actions.a.path: is required.",
        f"{bad}: body: must be one of json, form, query (not 'xml').",
    ]


def test_check_of_a_missing_file_is_one_sentence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "connectors", "check", str(tmp_path / "none.yaml"))
    assert (code, out, err) == (1, "", f"{tmp_path / 'none.yaml'}: no such manifest file.\n")
