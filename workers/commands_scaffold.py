"""``spark-integrations connectors new NAME [--dir DIR]``: scaffold a declared connector.

Writes ``NAME.yaml`` (the manifest), ``test_NAME.py`` (the contract suite on it),
``recordings/NAME.yaml`` (the provider's answers the suite replays) and ``docs/NAME.md`` into
DIR (default: the working folder). The files pass the contract suite as written; the guide
``docs/writing-a-connector.md`` walks through changing them. A bad name, the name of an installed
connector, or a file that exists already, is refused in one sentence (exit 2) before anything
is written.
"""

from __future__ import annotations

import keyword
import re
from importlib.metadata import entry_points
from pathlib import Path

import click

from spark_integrations.constants import CONNECTOR_ENTRY_POINT_GROUP
from spark_integrations.errors import UsageError
from spark_integrations.workers.output import emit
from spark_integrations.workers.scaffold_templates import DOCS, MANIFEST, RECORDINGS, TEST

__all__ = ["connectors_new", "scaffold"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_MAX_NAME = 40


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise UsageError(
            f"connector name {name[:_MAX_NAME]!r} must be a lowercase letter followed by up to "
            f"{_MAX_NAME - 1} lowercase letters, digits or underscores."
        )
    if keyword.iskeyword(name) or name.endswith("_"):
        raise UsageError(f"connector name {name!r} is a Python keyword or ends with '_'.")
    # Two entry points of one name: one connector would hide the other.
    if name in {ep.name for ep in entry_points(group=CONNECTOR_ENTRY_POINT_GROUP)}:
        raise UsageError(f"connector name {name!r} is the name of an installed connector.")


def scaffold(name: str, folder: Path) -> list[Path]:
    """Write the four files of a new connector into ``folder``; the paths written.

    Raises:
        UsageError: the name is not valid or taken, a file exists already, or the folder is a
            file.
    """
    _check_name(name)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is not a folder.")
    values = {
        "name": name,
        "title": name.replace("_", " ").title(),
        "cls": "".join(part.title() for part in name.split("_")),
    }
    files = {
        folder / f"{name}.yaml": MANIFEST,
        folder / f"test_{name}.py": TEST,
        folder / "recordings" / f"{name}.yaml": RECORDINGS,
        folder / "docs" / f"{name}.md": DOCS,
    }
    for path in files:
        if path.exists():
            raise UsageError(f"{path} exists already; remove it or choose another --dir.")
    written = []
    try:
        for path, template in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as out:
                out.write(template.substitute(values))
            written.append(path)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise UsageError(f"cannot write into {folder} ({exc.strerror or exc}).") from None
    return written


@click.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to write the files.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def connectors_new(name: str, folder: Path, as_json: bool) -> None:
    """Scaffold a declared connector: manifest, contract test, recordings and docs page."""
    written = scaffold(name, folder)
    text = "\n".join(f"wrote {p}" for p in written)
    text += (
        f"\nnext: edit {name}.yaml and recordings/{name}.yaml for your provider, then run "
        f"`pytest {folder / f'test_{name}.py'}` (see docs/writing-a-connector.md)."
    )
    emit({"name": name, "files": [str(p) for p in written]}, as_json, text)
