"""``spark-integrations connectors new NAME``: four files that pass the contract suite as
written, a manifest the loader accepts, and one sentence (exit 2) for a bad name or a file that
exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from spark_integrations.connectors.manifest import check_manifest, load_manifest
from spark_integrations.workers.cli import main
from tests.unit.commands import run_pytest


def _new(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(["connectors", "new", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_new_writes_a_connector_that_passes_the_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _new(capsys, "acme_crm", "--dir", str(tmp_path), "--json")
    assert (code, err) == (0, "")
    files = json.loads(out)["files"]
    assert sorted(Path(f).relative_to(tmp_path).as_posix() for f in files) == [
        "acme_crm.yaml",
        "docs/acme_crm.md",
        "recordings/acme_crm.yaml",
        "test_acme_crm.py",
    ]
    manifest = tmp_path / "acme_crm.yaml"
    assert check_manifest(manifest) == []
    connector = load_manifest(manifest)
    assert (connector.name, connector.title) == ("acme_crm", "Acme Crm")
    assert (
        "class TestAcmeCrmContract(ConnectorContract)"
        in (tmp_path / "test_acme_crm.py").read_text()
    )
    # Its rate-limit example proves the headers teach the budget, not only that they parse.
    recorded = yaml.safe_load((tmp_path / "recordings" / "acme_crm.yaml").read_text())
    assert recorded["rate_limit"]
    assert all({"pause", "rate"} & set(e["expect"]) for e in recorded["rate_limit"])
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Acme", "must be a lowercase letter"),
        ("acme-crm", "must be a lowercase letter"),
        ("1acme", "must be a lowercase letter"),
        ("a" * 41, "must be a lowercase letter"),
        ("class", "is a Python keyword"),
        ("acme_", "ends with"),
    ],
)
def test_a_bad_name_is_refused_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, says: str
) -> None:
    code, out, err = _new(capsys, name, "--dir", str(tmp_path))
    assert code == 2
    assert out == ""
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_the_name_of_an_installed_connector_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A plugin named like a connector already installed would replace it or be hidden by it.
    code, out, err = _new(capsys, "slack", "--dir", str(tmp_path))
    assert code == 2 and out == ""
    assert "'slack' is the name of an installed connector" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "acme.md").write_text("mine")
    code, _, err = _new(capsys, "acme", "--dir", str(tmp_path))
    assert code == 2
    assert "acme.md exists already" in err and err.count("\n") == 1
    assert (tmp_path / "docs" / "acme.md").read_text() == "mine"
    assert not (tmp_path / "acme.yaml").exists()


def test_the_folder_is_created_and_a_file_is_not_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _new(capsys, "acme", "--dir", str(tmp_path / "new" / "place"))
    assert code == 0
    assert (tmp_path / "new" / "place" / "acme.yaml").is_file()
    assert "next: edit acme.yaml" in out
    (tmp_path / "file").write_text("")
    code, _, err = _new(capsys, "acme", "--dir", str(tmp_path / "file"))
    assert code == 2 and err.strip()
