"""Actions: what a connector can do on the provider's side, declared rather than hand-written.

An :class:`Action` names its HTTP method and path and the shape of its params (required and
optional keys, each with the JSON types it accepts), so the fleet can refuse a malformed call at
once, with a clear sentence and without a request or a retry. A connector whose action needs more
than "send these params as JSON" overrides :meth:`connectors.base.Connector.build_request`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from spark_integrations.errors import UsageError

__all__ = ["Action"]

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


@dataclass(frozen=True)
class Action:
    """One thing a connector can do: an HTTP request built from validated params.

    Attributes:
        name: the action's name in ``integrations.call`` (``create_message``).
        method: HTTP method.
        path: path under the connection's base URL; ``{key}`` placeholders are filled from params.
        params: required params and the JSON types each accepts.
        optional: optional params and their types.
        idempotent: True when the provider honours the connector's idempotency header on this
            action, so a request whose answer was lost can be sent again safely.
    """

    name: str
    method: str
    path: str
    params: Mapping[str, JSONType] = field(default_factory=dict)
    optional: Mapping[str, JSONType] = field(default_factory=dict)
    idempotent: bool = False

    def validate(self, params: Any) -> dict[str, Any]:
        """Return params as a dict, or raise :class:`UsageError` naming what is wrong."""
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise UsageError(f"params of {self.name} must be a JSON object.")
        for key, needed in self.params.items():
            if key not in params:
                raise UsageError(f"{self.name} needs the param {key!r} ({_describe(needed)}).")
        for key, value in params.items():
            expected: JSONType | None = self.params.get(key) or self.optional.get(key)
            if expected is None:
                known = ", ".join([*self.params, *self.optional]) or "none"
                raise UsageError(f"{self.name} takes no param {key!r}; it takes {known}.")
            if not _matches(value, expected):
                raise UsageError(f"param {key!r} of {self.name} must be {_describe(expected)}.")
        return dict(params)

    def url_path(self, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The path with its placeholders filled, and the params left for the body or query."""
        rest = dict(params)
        path = self.path
        for key in list(rest):
            token = "{" + key + "}"
            if token in path:
                path = path.replace(token, quote(str(rest.pop(key)), safe=""))
        return path, rest
