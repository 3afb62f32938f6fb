"""Actions: what a connector can do on the provider's side, declared rather than hand-written.

An :class:`Action` names its HTTP method and path and the shape of its params (required and
optional keys, each with the JSON types it accepts), so the fleet can refuse a malformed call at
once, with a clear sentence and without a request or a retry. A connector whose action needs more
than "send these params as JSON" overrides :meth:`connectors.base.Connector.build_request`.

A param never changes where a request goes: the method and the path are declared, the path is
relative to the connection's base URL, and a placeholder (``/v1/users/{user}``) is filled with one
escaped path segment, refusing empty values and dot segments (``.``, ``..``). Values that cannot
be sent (a number that is not finite, text that is not valid Unicode, anything JSON cannot carry)
are refused by :meth:`Action.validate`, before any request is built.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from spark_integrations.errors import UsageError

__all__ = ["HTTP_METHODS", "Action", "fill_path", "placeholders_of", "sendable_problem"]

#: The methods an action may declare.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
    type(None): "null",
}
JSONType = type | tuple[type, ...]
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# Names quoted in messages are cut to this length: a message stays one readable sentence.
_NAME_CHARS = 60
# Deeper than this, a value is refused rather than walked (and JSON encoders would recurse).
_MAX_DEPTH = 64


def _describe(expected: JSONType) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _matches(value: Any, expected: JSONType) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _name(key: Any) -> str:
    """A param's name as a message quotes it: repr'd (so never raw control text), cut short."""
    text = repr(key)
    return text if len(text) <= _NAME_CHARS else text[: _NAME_CHARS - 4] + "...'"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which no request can carry
        return False
    return True


def sendable_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` cannot be sent as JSON or in a URL, or ``None`` when it can.

    JSON carries objects with string keys, lists, strings of valid Unicode, finite numbers,
    booleans and null; anything else (``NaN``, ``Infinity``, a lone surrogate, bytes, a set)
    would fail while the request is built, or be sent as something the caller did not mean.
    """
    if depth > _MAX_DEPTH:
        return f"is nested deeper than {_MAX_DEPTH} levels"
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    if isinstance(value, str):
        return None if _encodable(value) else "holds text that is not valid Unicode"
    if isinstance(value, list | tuple):
        for item in value:
            problem = sendable_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not _encodable(key):
                return "holds a key that is not valid text"
            problem = sendable_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"holds a {type(value).__name__}, which JSON cannot carry"


def _dot_segment(text: str) -> bool:
    """True when ``text``, as given or decoded once, holds a ``.`` or ``..`` path segment."""
    for candidate in (text, unquote(text)):
        if any(part in (".", "..") for part in re.split(r"[/\\]", candidate)):
            return True
    return False


@dataclass(frozen=True)
class Action:
    """One thing a connector can do: an HTTP request built from validated params.

    Attributes:
        name: the action's name in ``integrations.call`` (``create_message``).
        method: HTTP method, one of :data:`HTTP_METHODS`.
        path: path under the connection's base URL, starting with ``/``; ``{key}`` placeholders
            are filled from params, each with one escaped path segment. A placeholder must be a
            required param taking a string or an integer.
        params: required params and the JSON types each accepts.
        optional: optional params and their types.
        idempotent: True when the provider honours the connector's idempotency header on this
            action, so a request whose answer was lost can be sent again safely.
        repeatable: True when applying the action twice leaves what applying it once does
            (setting a state, adding a label, a reaction the provider then reports as already
            there), so a request whose answer was lost can be sent again without a key.
        body: how the params are sent (``"json"``, ``"form"`` or ``"query"``); ``None``: the
            connector's ``body_encoding`` (query for GET, DELETE and HEAD).
        budget: the connector's rate tier this action draws from (``tiers``), or ``None`` for
            the connection's own budget.
        result: dotted path of what the call returns in the answer's body (``None``: the body).
        fixed: fields added to every request's body (or query), under the params.

    Raises:
        ValueError: when the declaration itself is unsound (at import time of the connector).
    """

    name: str
    method: str
    path: str
    params: Mapping[str, JSONType] = field(default_factory=dict)
    optional: Mapping[str, JSONType] = field(default_factory=dict)
    idempotent: bool = False
    repeatable: bool = False
    body: str | None = None
    budget: str | None = None
    result: str | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in HTTP_METHODS:
            raise ValueError(
                f"action {self.name}: method {self.method!r} is not one of "
                f"{', '.join(sorted(HTTP_METHODS))}."
            )
        if not self.path.startswith("/") or self.path.startswith("//"):
            raise ValueError(
                f"action {self.name}: path {self.path!r} must start with one '/' (it is "
                "relative to the connection's base URL)."
            )
        where = self.path.split("?", 1)[0]
        for key in _PLACEHOLDER.findall(self.path):
            if key not in self.params:
                raise ValueError(
                    f"action {self.name}: placeholder {{{key}}} must be a required param."
                )
            if "{" + key + "}" not in where:
                raise ValueError(f"action {self.name}: placeholder {{{key}}} is not in the path.")
            declared = self.params[key]
            types = declared if isinstance(declared, tuple) else (declared,)
            if not set(types) <= {str, int}:
                raise ValueError(
                    f"action {self.name}: placeholder {{{key}}} must take a string or an integer."
                )

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The names of the path's placeholders, in order, each once."""
        return placeholders_of(self.path)

    def validate(self, params: Any) -> dict[str, Any]:
        """Return params as a dict, or raise :class:`UsageError` naming what is wrong.

        Checks every param's presence and type, that every value can be sent (see
        :func:`sendable_problem`) and that placeholders can fill their path segment.
        """
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise UsageError(f"params of {self.name} must be a JSON object.")
        for key, needed in self.params.items():
            if key not in params:
                raise UsageError(f"{self.name} needs the param {key!r} ({_describe(needed)}).")
        for key, value in params.items():
            expected: JSONType | None = (
                (self.params.get(key) or self.optional.get(key)) if isinstance(key, str) else None
            )
            if expected is None:
                known = ", ".join([*self.params, *self.optional]) or "none"
                raise UsageError(f"{self.name} takes no param {_name(key)}; it takes {known}.")
            if not _matches(value, expected):
                raise UsageError(f"param {key!r} of {self.name} must be {_describe(expected)}.")
            problem = sendable_problem(value)
            if problem is not None:
                raise UsageError(f"param {key!r} of {self.name} {problem}, so it cannot be sent.")
        checked = dict(params)
        self.url_path(checked)
        try:
            json.dumps(checked, allow_nan=False)
        except (ValueError, TypeError, RecursionError):
            # e.g. an integer too long to write out: JSON cannot carry it as given.
            raise UsageError(f"params of {self.name} cannot be written as JSON.") from None
        return checked

    def url_path(self, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The path with its placeholders filled, and the params left for the body or query.

        Each placeholder becomes exactly one path segment (see :func:`fill_path`).

        Raises:
            UsageError: a placeholder's param is missing, of the wrong type, empty, a dot
                segment, or not valid text.
        """
        return fill_path(self.name, self.path, self.placeholders, params)


def placeholders_of(template: str) -> tuple[str, ...]:
    """The names of a path template's ``{placeholders}``, in order, each once."""
    return tuple(dict.fromkeys(_PLACEHOLDER.findall(template)))


def fill_path(
    owner: str, template: str, keys: tuple[str, ...], params: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """``template`` with the placeholders named in ``keys`` filled from ``params``, and the
    params left over.

    Each placeholder becomes exactly one path segment: its value is percent-escaped (``/``,
    ``?``, ``#`` included), and an empty value or a dot segment is refused. Placeholders not
    in ``keys`` are left as they are. ``owner`` names the action or stream in messages.

    Raises:
        UsageError: a placeholder's param is missing, of the wrong type, empty, a dot
            segment, or not valid text.
    """
    rest = dict(params)
    filled: dict[str, str] = {}
    for key in keys:
        if key not in rest:
            raise UsageError(f"{owner} needs the param {key!r} for its path.")
        value = rest.pop(key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise UsageError(f"param {key!r} of {owner} must be a string or an integer.")
        text = str(value)
        if not text:
            raise UsageError(f"param {key!r} of {owner} must not be empty.")
        if _dot_segment(text):
            raise UsageError(
                f"param {key!r} of {owner} must not be '.' or '..' nor hold such a path segment."
            )
        if not _encodable(text):
            raise UsageError(f"param {key!r} of {owner} holds text that is not valid Unicode.")
        filled[key] = quote(text, safe="")
    # One pass over the template: a value can never be read as another placeholder.
    path = _PLACEHOLDER.sub(lambda m: filled.get(m.group(1), m.group(0)), template)
    return path, rest
