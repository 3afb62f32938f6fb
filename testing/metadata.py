"""The contract's checks of what a connector declares, before any request."""

from __future__ import annotations

import contextlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.streams import Stream
from spark_integrations.errors import UsageError
from spark_integrations.testing.kinds import AUTH_KINDS, auth_kinds_of
from spark_integrations.testing.recordings import Recordings
from spark_integrations.testing.streams import ORDERS

__all__ = ["AUTH_KINDS", "auth_kinds_of", "metadata_problems", "unrecorded"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_JSON_TYPES = frozenset({str, int, float, bool, list, dict, type(None)})
_PARAM_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _roots(connector: type[Connector], recs: Recordings) -> list[Path]:
    """The folders a docs path may be relative to: the manifest's (or the module's), the
    recordings', the working folder's, and each one's parents."""
    starts = [recs.base, Path.cwd()]
    manifest = getattr(connector, "manifest_path", None)
    if manifest:
        starts.insert(0, Path(str(manifest)).resolve().parent)
    else:
        with contextlib.suppress(TypeError, OSError):
            starts.insert(0, Path(inspect.getfile(connector)).resolve().parent)
    seen: list[Path] = []
    for start in starts:
        for folder in (start, *start.parents):
            if folder not in seen:
                seen.append(folder)
    return seen


def _docs_problem(connector: type[Connector], recs: Recordings) -> str | None:
    docs = connector.docs_path
    if not docs:
        return "declares no docs page (docs)"
    roots = _roots(connector, recs)
    if any((root / str(docs)).is_file() for root in roots):
        return None
    checkout = any(
        (root / "pyproject.toml").is_file() or (root / ".git").exists() for root in roots
    )
    return f"its docs page {docs} does not exist" if checkout else None


def _types_ok(declared: Any) -> bool:
    types = declared if isinstance(declared, tuple) else (declared,)
    return all(t in _JSON_TYPES for t in types)


def metadata_problems(connector: type[Connector], recs: Recordings) -> list[str]:
    """Everything incomplete or inconsistent in what the connector declares."""
    problems: list[str] = []
    name = getattr(connector, "name", "")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"its name {name!r} is not [a-z][a-z0-9_]*")
    if not connector.title:
        problems.append("declares no title")
    docs = _docs_problem(connector, recs)
    if docs:
        problems.append(docs)
    try:
        json.dumps(connector.describe())
    except Exception as exc:
        problems.append(f"describe() fails or is not JSON ({type(exc).__name__}: {exc})")
    for action in connector.actions:
        if not action.path.startswith("/"):
            problems.append(f"action {action.name}: path {action.path!r} does not start with /")
        for key, declared in {**action.params, **action.optional}.items():
            if not _types_ok(declared):
                problems.append(f"action {action.name}: param {key} has no JSON type")
    for stream in connector.streams:
        problems += _stream_problems(stream, set(connector.all_config_keys()))
    kinds = auth_kinds_of(connector)
    if not kinds:
        problems.append("declares no auth kind")
    for kind in kinds:
        if kind not in AUTH_KINDS:
            problems.append(f"auth kind {kind!r} is not one of {', '.join(AUTH_KINDS)}")
    recorded = {str(e.get("kind")) for e in recs.entries("auth")}
    for kind in kinds:
        if kind not in recorded:
            problems.append(f"auth kind {kind} has no auth recording")
    for kind in sorted(recorded - set(kinds)):
        problems.append(f"the recordings test auth kind {kind}, which is not declared")
    try:
        connector.validate_config(recs.config)
        connector.validate_secrets(recs.secrets)
    except UsageError as exc:
        problems.append(f"the recordings' config or secrets are refused: {exc}")
    return problems


def _stream_problems(stream: Stream, config_keys: set[str]) -> list[str]:
    problems = []
    where = f"stream {stream.name}"
    if not stream.path:
        problems.append(f"{where}: no path")
    if not stream.primary_key:
        problems.append(f"{where}: no primary_key")
    order = stream.order
    if order not in ORDERS:
        problems.append(f"{where}: order {order!r} is not one of {', '.join(ORDERS)}")
    if order == "newest_first" and stream.replication_key is None:
        problems.append(f"{where}: a newest_first stream needs a replication_key")
    if stream.since_param and stream.replication_key is None:
        problems.append(f"{where}: since_param without a replication_key")
    params = stream.parameters
    names = set()
    for param in params:
        names.add(param.name)
        if not param.name:
            problems.append(f"{where}: a parameter has no name")
        if param.type not in _PARAM_TYPES:
            problems.append(f"{where}: parameter {param.name} has type {param.type!r}")
    for key in _PLACEHOLDER.findall(stream.path):
        if key not in names and key not in config_keys:
            problems.append(
                f"{where}: placeholder {{{key}}} is neither a parameter nor a config key"
            )
    return problems


def unrecorded(connector: type[Connector], recs: Recordings) -> list[str]:
    """Actions and streams no recording exercises, recordings naming unknown ones, and a
    provider's limits left unrecorded."""
    problems = []
    actions = {str(e.get("action")) for e in recs.entries("actions")}
    streams = {str(e.get("stream")) for e in recs.entries("streams")}
    for action in connector.action_names():
        if action not in actions:
            problems.append(f"action {action} has no recording")
    for stream in connector.stream_names():
        if stream not in streams:
            problems.append(f"stream {stream} has no recording")
    for action in sorted(actions - set(connector.action_names())):
        problems.append(f"the recordings name action {action}, which is not declared")
    for stream in sorted(streams - set(connector.stream_names())):
        problems.append(f"the recordings name stream {stream}, which is not declared")
    refused = any(e.get("expect") == "rate_limited" for e in recs.entries("errors"))
    if not recs.entries("rate_limit") and not refused:
        problems.append(
            "the recordings document no rate limit (no rate_limit entry, and no error "
            "expecting rate_limited)"
        )
    return problems
