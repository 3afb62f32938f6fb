"""Stripe objects and request bodies for the Stripe emulator.

Objects are built from Stripe's published example of each resource (``stripe_fixtures3.json``
of stripe/openapi, read from ``../shared/provider-specs/``, never copied here) with the
emulator's id, ``created`` and the fields a request set; where that folder is absent, from the
few fields every Stripe object has. Bodies are ``application/x-www-form-urlencoded`` with
Stripe's nested keys (``metadata[order]=6735``, ``expand[]=x``, ``items[0][price]=p``).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import secrets
import string
from pathlib import Path
from typing import Any

__all__ = ["FIXTURES", "decode_form", "fixture", "new_id", "stripe_object"]

FIXTURES = (
    Path(__file__).resolve().parents[3] / "shared" / "provider-specs" / "stripe_fixtures3.json"
)

PREFIXES = {
    "customer": "cus",
    "charge": "ch",
    "payment_intent": "pi",
    "invoice": "in",
    "event": "evt",
    "refund": "re",
}
_ALPHABET = string.ascii_letters + string.digits


def new_id(kind: str) -> str:
    """A Stripe-looking id of object ``kind`` (``cus_...``, ``pi_...``)."""
    return f"{PREFIXES[kind]}_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


@functools.cache
def _resources() -> dict[str, Any]:
    if not FIXTURES.is_file():
        return {}
    return dict(json.loads(FIXTURES.read_text())["resources"])


def fixture(kind: str) -> dict[str, Any] | None:
    """Stripe's published example object of ``kind`` (a deep copy), or None without the file."""
    found = _resources().get(kind)
    return copy.deepcopy(found) if found is not None else None


def stripe_object(kind: str, oid: str, created: int, fields: dict[str, Any]) -> dict[str, Any]:
    """An object of ``kind`` with ``id``, ``created`` and ``fields`` over Stripe's example."""
    base = fixture(kind) or {"metadata": {}}
    base.update({"id": oid, "object": kind, "created": created, "livemode": False})
    for key, value in fields.items():
        base[key] = value
    return base


_KEY = re.compile(r"\[([^\]]*)\]")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding as nested data: ``a[b]=1`` -> ``{"a": {"b": "1"}}``, ``a[]=x``
    and ``a[0]=x`` -> ``{"a": ["x"]}``. Values stay strings, as Stripe reads them."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, bracket, rest = key.partition("[")
        path = [head, *_KEY.findall(bracket + rest)] if bracket else [head]
        node: dict[str, Any] = root
        for i, part in enumerate(path):
            leaf = i == len(path) - 1
            if part == "":  # a[] appends
                part = str(len(node))
            if leaf:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"Invalid array or hash for {key}")
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _lists(v) for k, v in node.items()}
    if out and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


def canonical(params: dict[str, Any]) -> str:
    """A request's params in one comparable form (for idempotency checks)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
