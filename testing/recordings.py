"""Recordings: the provider's documented answers a connector's contract tests replay.

A recordings file (YAML or JSON) holds the connection's config and secrets, one entry per auth
kind, per action request, per stream walk, per documented error and per rate-limit answer (see
``docs/writing-a-connector.md``). A response's body may come from a file beside the recordings
or outside the repository (a provider's published fixtures)::

    response: {status: 200, body_file: bodies/customer.json}
    response: {status: 200, body_from: {file: ../fixtures.json, pointer: /resources/customer}}
    response: {status: 200, body: {object: list, data: [{$from: {file: f.json, pointer: /a}}]}}

A referenced file that is absent skips the test that needs it, with the reason, unless
``CI=true``, where it fails: a provider's published description is not optional in CI.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

__all__ = ["ENTRY_KINDS", "Recordings", "in_ci", "recordings", "resolve_pointer"]

#: The sections of a recordings file that hold lists of entries, and the key naming each entry.
ENTRY_KINDS: dict[str, str] = {
    "auth": "kind",
    "actions": "action",
    "streams": "stream",
    "errors": "name",
    "rate_limit": "name",
}
_TOP_KEYS = frozenset({"config", "secrets", "token", *ENTRY_KINDS})


def in_ci() -> bool:
    """True under ``CI=true``: a missing provider file then fails instead of skipping."""
    return os.environ.get("CI", "").lower() == "true"


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at a JSON Pointer (RFC 6901) in ``document``; a ``KeyError`` naming the part
    that is missing."""
    if pointer in ("", "/"):
        return document
    if not pointer.startswith("/"):
        raise KeyError(f"JSON pointer {pointer!r} must start with '/'")
    value = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(f"JSON pointer {pointer!r} finds nothing at {part!r}")
    return value


def _read_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    if path.suffix == ".json":
        return json.loads(text)
    return text


class Recordings:
    """A loaded recordings file (or a dict), with the folder its file references are read from.

    Attributes:
        data: the document as loaded.
        base: the folder relative references are resolved from.
        source: where the document came from (a path, or ``"<dict>"``).
    """

    def __init__(self, data: Mapping[str, Any], *, base: Path, source: str) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: a recordings document must be a mapping.")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ValueError(
                f"{source}: unknown key {unknown[0]!r}; a recordings document holds "
                f"{', '.join(sorted(_TOP_KEYS))}."
            )
        for kind in ENTRY_KINDS:
            entries = data.get(kind) or []
            if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
                raise ValueError(f"{source}: {kind} must be a list of mappings.")
        self.data = dict(data)
        self.base = base
        self.source = source
        self._files: dict[Path, Any] = {}

    def __repr__(self) -> str:
        return f"Recordings({self.source})"

    @property
    def config(self) -> dict[str, Any]:
        """The connection's config every check uses."""
        return dict(self.data.get("config") or {})

    @property
    def secrets(self) -> dict[str, str]:
        """The connection's secrets every check but the auth checks uses."""
        return {str(k): str(v) for k, v in (self.data.get("secrets") or {}).items()}

    @property
    def token(self) -> str | None:
        """An OAuth access token handed out by the suite's token source, when given."""
        token = self.data.get("token")
        return None if token is None else str(token)

    def entries(self, kind: str) -> list[dict[str, Any]]:
        """The entries of one section, in file order."""
        return [dict(e) for e in self.data.get(kind) or []]

    def ids(self, kind: str) -> list[str]:
        """One test id per entry of a section: its name, numbered when it repeats."""
        key = ENTRY_KINDS[kind]
        seen: dict[str, int] = {}
        out = []
        for index, entry in enumerate(self.entries(kind)):
            label = str(entry.get("name") or entry.get(key) or f"{kind}{index}")
            seen[label] = seen.get(label, 0) + 1
            out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
        return out

    def secret_values(self) -> set[str]:
        """Every secret value the recordings hand the connector (the no-secret checks look for
        each): the connection's secrets, the auth entries' secrets and tokens, each also as it
        is sent (percent-encoded in a URL, and any two of one connection's secrets joined as
        ``a:b`` in base64, as HTTP Basic sends them)."""
        groups = [self.secrets]
        groups += [
            {str(k): str(v) for k, v in (e.get("secrets") or {}).items()}
            for e in self.entries("auth")
        ]
        values: set[str] = set()
        for group in groups:
            values.update(group.values())
            values.update(_basic_forms(list(group.values())))
        tokens = [self.token, *(e.get("token") for e in self.entries("auth"))]
        values.update(str(t) for t in tokens if t)
        values.update({quote(v, safe="") for v in values} | {quote_plus(v) for v in values})
        # A very short value ("", "x") would match by accident anywhere.
        return {v for v in values if len(v) >= 4}

    # -- file references ----------------------------------------------------------------------

    def _file(self, name: Any) -> Any:
        path = Path(os.path.expanduser(str(name)))
        if not path.is_absolute():
            path = (self.base / path).resolve()
        if path not in self._files:
            if not path.is_file():
                message = f"{self.source} refers to {path}, which is absent"
                if in_ci():
                    pytest.fail(message + " (required under CI=true).")
                pytest.skip(message + " (skipped outside CI).")
            self._files[path] = _read_document(path)
        return self._files[path]

    def _from(self, ref: Any) -> Any:
        if not isinstance(ref, Mapping) or "file" not in ref:
            raise ValueError(f"{self.source}: a file reference needs {{file: ..., pointer: ...}}.")
        value = self._file(ref["file"])
        pointer = ref.get("pointer")
        if pointer:
            try:
                value = resolve_pointer(value, str(pointer))
            except KeyError as exc:
                raise ValueError(f"{self.source}: {ref['file']}: {exc.args[0]}.") from None
        merge = ref.get("merge")
        if merge:
            if not isinstance(value, Mapping) or not isinstance(merge, Mapping):
                raise ValueError(f"{self.source}: merge applies to an object only.")
            value = {**value, **self.expand(merge)}
        return value

    def expand(self, value: Any) -> Any:
        """``value`` with every ``{$from: {file, pointer, merge}}`` replaced by what it names."""
        if isinstance(value, Mapping):
            if set(value) == {"$from"}:
                return self._from(value["$from"])
            return {k: self.expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v) for v in value]
        return value

    def body(self, response: Mapping[str, Any]) -> Any:
        """A recorded response's body: ``body``, ``body_file`` or ``body_from`` (None: empty)."""
        if "body_file" in response:
            return self._file(response["body_file"])
        if "body_from" in response:
            return self._from(response["body_from"])
        return self.expand(response.get("body"))


def _basic_forms(values: list[str]) -> set[str]:
    """``base64(a:b)`` for every ordered pair of ``values`` (the password may be empty)."""
    pairs = [(a, b) for i, a in enumerate(values) for j, b in enumerate(values) if i != j]
    pairs += [(a, "") for a in values]
    return {base64.b64encode(f"{a}:{b}".encode()).decode() for a, b in pairs if a}


def _caller_dir() -> Path | None:
    import inspect

    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back if frame and frame.f_back else None
        name = caller.f_globals.get("__file__") if caller else None
    finally:
        del frame
    return Path(name).resolve().parent if name else None


def recordings(source: str | os.PathLike[str] | Mapping[str, Any]) -> Recordings:
    """Load a recordings file (YAML or JSON), or wrap a dict.

    A relative path is looked up beside the calling module first, then in the working folder.
    """
    if isinstance(source, Mapping):
        return Recordings(source, base=Path.cwd(), source="<dict>")
    path = Path(source)
    if not path.is_absolute():
        here = _caller_dir()
        candidates = ([here / path] if here else []) + [Path.cwd() / path]
        path = next((c for c in candidates if c.is_file()), candidates[-1])
    if not path.is_file():
        raise FileNotFoundError(f"no recordings file at {path}.")
    data = _read_document(path)
    if data is None:
        data = {}
    return Recordings(data, base=path.resolve().parent, source=str(path))


def iter_strings(value: Any) -> Iterator[str]:
    """Every string inside a decoded document, keys included (for the no-secret checks)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from iter_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from iter_strings(v)
