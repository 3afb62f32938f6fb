"""Form bodies with nested keys, as Stripe reads them (``metadata[order]=6735``,
``expand[0]=customer``, booleans as ``true``/``false``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["BODY_ENCODINGS", "form_pairs"]

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
