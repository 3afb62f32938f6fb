"""Declared connectors: a connector written as a manifest (YAML or TOML) instead of Python.

A manifest holds what most REST connectors differ by, as data: base URL, auth kinds, actions,
streams and their pagination, rate limits and tiers, error rules, idempotency header, webhook
scheme. :func:`load_manifest` reads one, checks it against the published JSON Schema
(``connectors/manifest.schema.json``, printed by ``spark-integrations connectors schema``) and
against what the schema cannot say (placeholders, tiers, pagination options, duplicates), and
builds the connector class: ``type(Name, (HookClass or Connector,), attrs)``, setting the very
ClassVars a Python connector sets. Every problem is reported at once, one sentence each
(``FILE: key.path: what is wrong``), in one :class:`~errors.ManifestError`.

Python remains for what data cannot say: ``class: package.module:Hooks`` names a
:class:`~connectors.base.Connector` subclass whose methods (``signer``, ``build_request``,
``judge``, ``parse_page``, ``budgets``, ...) the declared connector inherits.

An entry-point module declares its connector in one line::

    Slack = declared(__file__, "slack.yaml")
"""

from __future__ import annotations

import json
import sys
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.manifest_build import build_attrs, class_name, hook_class
from spark_integrations.connectors.manifest_schema import schema_problems, value_problems
from spark_integrations.errors import ManifestError

__all__ = ["MANIFEST_SUFFIXES", "check_manifest", "declared", "load_manifest", "manifest_schema"]

#: The file names a manifest may have.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".toml")


@cache
def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), as published with the package."""
    text = resources.files("spark_integrations.connectors").joinpath("manifest.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(manifest_schema())


def read_manifest(path: Path) -> Any:
    """The manifest's data, or a :class:`ManifestError` saying why the file cannot be read."""
    where = str(path)
    if path.suffix not in MANIFEST_SUFFIXES:
        raise ManifestError(f"{where}: a manifest must be a {', '.join(MANIFEST_SUFFIXES)} file.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{where}: no such manifest file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{where}: cannot be read ({type(exc).__name__}).") from None
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return yaml.safe_load(text)
    except RecursionError:
        raise ManifestError(f"{where}: (top level): is nested too deeply.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{where}: is not valid TOML ({exc}).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ManifestError(f"{where}: is not valid YAML{at} ({problem}).") from None


def check_manifest(path: str | Path) -> list[str]:
    """Every problem of a manifest, one sentence each (empty when it loads)."""
    try:
        _build(Path(path), module=__name__)
    except ManifestError as exc:
        return list(exc.problems)
    return []


def load_manifest(path: str | Path) -> type[Connector]:
    """The connector a manifest declares, built once per file.

    Raises:
        ManifestError: the file cannot be read, or it holds problems (all of them listed).
    """
    return _load(str(Path(path).resolve()), __name__)


@cache
def _load(path: str, module: str) -> type[Connector]:
    return _build(Path(path), module=module)


def _build(path: Path, *, module: str) -> type[Connector]:
    data = read_manifest(path)
    where = str(path)
    problems = value_problems(data, where) or schema_problems(_validator(), data, where)
    if problems:
        raise ManifestError(problems)
    attrs, problems = build_attrs(data, where)
    base, hook_problems = hook_class(data, where)
    problems += hook_problems
    if base is not None:
        problems += _hook_checks(data, base, where)
    if problems:
        raise ManifestError(problems)
    assert base is not None
    name = class_name(data["name"])
    attrs.update({"__module__": module, "__qualname__": name, "manifest_path": where})
    attrs.setdefault("__doc__", f"The {attrs.get('title') or data['name']} connector, declared.")
    return type(name, (base,), attrs)


def _hook_checks(data: dict[str, Any], base: type[Connector], where: str) -> list[str]:
    kinds = data.get("auth", {}).get("kinds") or list(data.get("auth", {}))
    if "jwt_app" in kinds and base.signer is Connector.signer:
        return [
            f"{where}: auth.jwt_app: needs a class: whose signer() signs requests (a JWT "
            "cannot be declared as data)."
        ]
    return []


def declared(module: str, filename: str) -> type[Connector]:
    """The connector declared in ``filename``, for an entry-point module.

    ``module`` is the module's ``__file__`` or dotted name; the manifest is looked for next to
    the module, then in a ``manifests`` folder beside the module's package (the built-in ones:
    ``connectors/providers/slack.py`` declares ``connectors/manifests/slack.yaml``).
    """
    if module.endswith(".py") or "/" in module or "\\" in module:
        folder = Path(module).resolve().parent
    else:
        spec_module = sys.modules.get(module)
        origin = getattr(spec_module, "__file__", None)
        if origin is None:
            raise ManifestError(f"{filename}: module {module} has no file to look beside.")
        folder = Path(origin).resolve().parent
    caller = sys._getframe(1).f_globals.get("__name__", __name__)
    for candidate in (folder / filename, folder.parent / "manifests" / filename):
        if candidate.is_file():
            return _load(str(candidate), str(caller))
    raise ManifestError(
        f"{filename}: no such manifest beside {folder} nor in {folder.parent / 'manifests'}."
    )
