"""Form bodies with nested keys, as Stripe reads them (``metadata[order]=6735``,
``expand[0]=customer``, booleans as ``true``/``false``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spark_integrations.connectors.actions import Action

__all__ = ["BODY_ENCODINGS", "encode_params", "form_pairs", "query_value"]

#: How an action's params may be sent.
BODY_ENCODINGS = ("json", "form", "query")


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def form_pairs(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``params`` flattened to form fields: objects as ``a[b]``, lists as ``a[0]``, in order.

    An empty object or list sends the bare key with an empty value (Stripe: "unset").
    """
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        pairs.extend(_pairs(name, value))
    return pairs


def _pairs(name: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return form_pairs(value, name) if value else [(name, "")]
    if isinstance(value, list | tuple):
        if not value:
            return [(name, "")]
        pairs: list[tuple[str, str]] = []
        for i, item in enumerate(value):
            pairs.extend(_pairs(f"{name}[{i}]", item))
        return pairs
    return [(name, _scalar(value))]


def query_value(value: Any) -> Any:
    """A parameter as a query parameter of a JSON connector: booleans as ``true``/``false``,
    objects as JSON, lists as repeated parameters."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def encode_params(action: Action, params: Mapping[str, Any], default: str) -> dict[str, Any]:
    """The ``requests`` keyword sending an action's params (``data``, ``params`` or ``json``):
    as the action's ``body`` says, else in the query for GET, DELETE and HEAD, else as the
    connector's ``default`` encoding. A form connector's query nests keys as its bodies do."""
    encoding = action.body
    if encoding is None:
        query_only = action.method in ("GET", "DELETE", "HEAD")
        encoding = "query" if query_only else default
    if encoding == "form":
        return {"data": form_pairs(params)}
    if encoding == "query":
        if default == "form":
            return {"params": form_pairs(params)}
        return {"params": {key: query_value(value) for key, value in params.items()}}
    return {"json": dict(params)}
