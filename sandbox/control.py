"""Control endpoints under ``/_sandbox``, for tests, benchmarks and the demo.

They are never authenticated, rate limited or faulted: a test must always be able to read the
counters and list the messages to check what really happened on the provider's side.
"""

from __future__ import annotations

import json
import math
from typing import Any

from spark_integrations.sandbox.common import Request, Response, error, json_response
from spark_integrations.sandbox.core import Sandbox
from spark_integrations.sandbox.options import ALL_FAULT_KINDS

__all__ = ["faults", "health", "hold", "messages", "replica", "reset", "revoke", "stats", "update"]


def _json_object(req: Request) -> dict[str, Any] | Response:
    try:
        data = json.loads(req.body or b"{}")
    except ValueError:
        return error(400, "invalid_request", "the body must be a JSON object")
    if not isinstance(data, dict):
        return error(400, "invalid_request", "the body must be a JSON object")
    return data


def health(sb: Sandbox, req: Request) -> Response:
    """``GET /_sandbox/health``: ``{"ok": true}`` once listening."""
    return json_response(200, {"ok": True})


def stats(sb: Sandbox, req: Request) -> Response:
    """``GET /_sandbox/stats``: every counter, ``records`` and ``webhooks_pending``."""
    return json_response(200, sb.stats_snapshot())


def reset(sb: Sandbox, req: Request) -> Response:
    """``POST /_sandbox/reset``: zero the counters; data (items, messages, tokens) stays."""
    sb.stats.reset()
    return json_response(200, {"ok": True})


def messages(sb: Sandbox, req: Request) -> Response:
    """``GET /_sandbox/messages``: every message, oldest first.

    Each is ``{"id", "text", "idempotency_key", "created_at"}``; tests count duplicates here.
    """
    return json_response(200, sb.messages.all())


def revoke(sb: Sandbox, req: Request) -> Response:
    """``POST /_sandbox/revoke`` ``{"access_token": T}`` or ``{"all": true}``: expire tokens now.

    Answers ``{"ok": true, "expired": N}``; the API then says the token *expired* (401).
    """
    data = _json_object(req)
    if isinstance(data, Response):
        return data
    if data.get("all") is True:
        count = sb.tokens.expire(None)
    elif isinstance(data.get("access_token"), str):
        count = sb.tokens.expire(data["access_token"])
    else:
        return error(400, "invalid_request", 'give {"access_token": "..."} or {"all": true}')
    return json_response(200, {"ok": True, "expired": count})


def faults(sb: Sandbox, req: Request) -> Response:
    """``POST /_sandbox/faults`` ``{"rate": F, "kinds": [...]}``: change fault injection live.

    Both fields are optional; answers ``{"ok": true, "rate": F, "kinds": [...]}``.
    """
    data = _json_object(req)
    if isinstance(data, Response):
        return data
    rate = data.get("rate", sb.faults.rate)
    kinds = data.get("kinds", list(sb.faults.kinds))
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not math.isfinite(rate)
        or not 0 <= rate <= 1
    ):
        return error(400, "invalid_request", "rate must be a number between 0 and 1")
    if (
        not isinstance(kinds, list)
        or not kinds
        or any(not isinstance(k, str) or k not in ALL_FAULT_KINDS for k in kinds)
    ):
        return error(
            400, "invalid_request", f"kinds must be a list of {', '.join(ALL_FAULT_KINDS)}"
        )
    sb.faults.configure(float(rate), tuple(kinds))
    return json_response(200, {"ok": True, "rate": rate, "kinds": kinds})


def hold(sb: Sandbox, req: Request) -> Response:
    """``POST /_sandbox/hold`` ``{"scopes": ["api", "token"]}``: hold the requests of those
    scopes where they stand until a later call leaves them out (``{"scopes": []}`` releases
    all); answers ``{"ok": true, "scopes": [...], "held": N}`` (see ``sandbox/hold.py``)."""
    data = _json_object(req)
    if isinstance(data, Response):
        return data
    scopes = data.get("scopes")
    if not isinstance(scopes, list) or any(not isinstance(s, str) for s in scopes):
        return error(400, "invalid_request", 'give {"scopes": [...]} with api and/or token')
    try:
        sb.gate.hold(scopes)
    except ValueError as exc:
        return error(400, "invalid_request", str(exc))
    return json_response(200, {"ok": True, "scopes": sb.gate.scopes, "held": sb.gate.held})


def update(sb: Sandbox, req: Request) -> Response:
    """``POST /_sandbox/update`` ``{"count": N}``: change N random records now, as the churn
    thread does (new version, value and ``updated_at``); answers ``{"ok": true, "updated": N}``.
    """
    data = _json_object(req)
    if isinstance(data, Response):
        return data
    count = data.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1_000_000:
        return error(400, "invalid_request", "count must be a whole number from 0 to 1000000")
    return json_response(200, {"ok": True, "updated": sb.dataset.update(count)})


def replica(sb: Sandbox, req: Request) -> Response:
    """``POST /_sandbox/replica`` ``{"snapshot": true}`` copies the records as they are into a
    read replica; ``{"reads": "replica"}`` serves listings from that copy (a replica lagging
    behind the updates since), ``{"reads": "primary"}`` from the live records again."""
    data = _json_object(req)
    if isinstance(data, Response):
        return data
    snapshot, reads = data.get("snapshot", False), data.get("reads")
    if not isinstance(snapshot, bool) or reads not in (None, "replica", "primary"):
        return error(
            400, "invalid_request", 'give {"snapshot": true} and/or {"reads": "replica"|"primary"}'
        )
    if snapshot:
        sb.dataset.snapshot()
    if reads is not None:
        try:
            sb.dataset.read_replica(reads == "replica")
        except ValueError as exc:
            return error(400, "invalid_request", str(exc))
    return json_response(200, {"ok": True, "snapshot": snapshot, "reads": reads})
