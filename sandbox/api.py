"""The provider's API under ``/v1``: authentication, rate limiting, faults, items and messages.

Every API request goes through :func:`handle`, in this order: route (404/405), authenticate
(401), take a rate-limit token (429), draw a fault (which strikes before the effect, or for
about 20% of message creations after it), then the endpoint. A listing asked to loop
(``cycle_at=``) is answered by :mod:`sandbox.cycles`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from hmac import compare_digest
from typing import Any
from urllib.parse import urlencode

from spark_integrations.sandbox import cycles
from spark_integrations.sandbox.common import Request, Response, dumps, error, parse_iso
from spark_integrations.sandbox.core import Sandbox
from spark_integrations.sandbox.dataset import decode_cursor, encode_cursor
from spark_integrations.sandbox.faults import Fault, fault_response
from spark_integrations.sandbox.oauth import basic_credentials, bearer_error

__all__ = ["MAX_PAGE", "authenticate", "handle"]

MAX_PAGE = 100

Endpoint = Callable[[Sandbox, Request, Fault | None, str], Response]


class _BadParam(ValueError):
    """A query parameter is invalid; its text is the sentence of the 400 answer."""


def authenticate(sb: Sandbox, req: Request) -> tuple[str | None, str]:
    """The credential's identity (the rate-limit bucket's name), or None and why it is refused.

    ``Authorization`` decides when present (Bearer token or static key, or Basic client
    credentials); otherwise ``X-API-Key`` or ``?api_key=`` with the static key.
    """
    opts = sb.options
    api_key = opts.api_key.encode() if opts.api_key else None
    header = req.headers.get("Authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            if api_key is not None and compare_digest(value.encode(), api_key):
                return "key", ""
            check = sb.tokens.check(value)
            if check == "ok":
                return "token:" + value, ""
            reasons = {
                "expired": "the access token expired",
                "revoked": "the access token was revoked",
                "unknown": "unknown access token",
            }
            return None, reasons[check]
        if scheme.lower() == "basic":
            user, password = basic_credentials(header) or ("", "")
            if compare_digest(user.encode(), opts.client_id.encode()) and compare_digest(
                password.encode(), opts.client_secret.encode()
            ):
                return "basic:" + user, ""
            return None, "wrong Basic credentials"
        return None, f"unsupported authorization scheme {scheme!r}"
    key = req.headers.get("X-API-Key")
    if key is None:
        key = req.query.get("api_key")
    if key is not None:
        if api_key is not None and compare_digest(key.encode(), api_key):
            return "key", ""
        return None, "invalid API key"
    return None, "missing credentials"


def _slow(sb: Sandbox, fault: Fault | None) -> None:
    if fault is not None and fault.kind == "slow":
        sb.stopping.wait(sb.options.slow_seconds)


def _int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _BadParam(f"{name} must be an integer, not {text!r}") from None
    if not low <= value <= high:
        raise _BadParam(f"{name} must be between {low} and {high}, not {value}")
    return value


def _since(query: dict[str, str]) -> int | None:
    text = query.get("updated_since")
    if text is None:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        raise _BadParam(f"updated_since must be an ISO-8601 time, not {text!r}") from None


def _after(query: dict[str, str], name: str) -> tuple[int, str] | None:
    text = query.get(name)
    if not text:
        return None
    try:
        return decode_cursor(text)
    except ValueError:
        raise _BadParam(f"{name} is not a cursor this server made: {text!r}") from None


def _array(rows: list[bytes]) -> bytes:
    return b"[" + b",".join(rows) + b"]"


def list_cursor(sb: Sandbox, req: Request, fault: Fault | None, _: str) -> Response:
    """``GET /v1/items?cursor=&limit=``: ``{"data": [...], "next_cursor": str | null}``.

    ``order=desc`` lists newest first (still from ``updated_since`` on); ``tag=WORD`` lists
    only the items whose name begins with that word.
    """
    q = req.query
    limit = _int(q, "limit", MAX_PAGE, 1, MAX_PAGE)
    order = q.get("order", "asc")
    if order not in ("asc", "desc"):
        raise _BadParam(f"order must be asc or desc, not {order!r}")
    tag = q.get("tag")
    if tag is not None and not tag:
        raise _BadParam("tag must not be empty")
    if order == "asc" and tag is None:
        rows, last = sb.dataset.after(_since(q), _after(q, "cursor"), limit)
    else:
        rows, last = sb.dataset.listing(
            _since(q), _after(q, "cursor"), limit, newest_first=order == "desc", tag=tag
        )
    _slow(sb, fault)
    cursor = dumps(encode_cursor(last) if last else None)
    return Response(200, b'{"data":' + _array(rows) + b',"next_cursor":' + cursor + b"}")


def list_token(sb: Sandbox, req: Request, fault: Fault | None, _: str) -> Response:
    """``GET /v1/items/by-token?next_token=&max_results=``: ``{"items", "nextToken"?}``."""
    q = req.query
    limit = _int(q, "max_results", MAX_PAGE, 1, MAX_PAGE)
    rows, last = sb.dataset.after(_since(q), _after(q, "next_token"), limit)
    _slow(sb, fault)
    tail = b',"nextToken":' + dumps(encode_cursor(last)) if last else b""
    return Response(200, b'{"items":' + _array(rows) + tail + b"}")


def list_link(sb: Sandbox, req: Request, fault: Fault | None, _: str) -> Response:
    """``GET /v1/items/by-link?after=&limit=``: a JSON list, next page in ``Link: rel="next"``."""
    q = req.query
    limit = _int(q, "limit", MAX_PAGE, 1, MAX_PAGE)
    rows, last = sb.dataset.after(_since(q), _after(q, "after"), limit)
    _slow(sb, fault)
    headers = []
    if last:
        params = {"after": encode_cursor(last), "limit": str(limit)}
        if "updated_since" in q:
            params["updated_since"] = q["updated_since"]
        url = f"{req.base_url}/v1/items/by-link?{urlencode(params)}"
        headers.append(("Link", f'<{url}>; rel="next"'))
    return Response(200, _array(rows), headers=headers)


def list_offset(sb: Sandbox, req: Request, fault: Fault | None, _: str) -> Response:
    """``GET /v1/items/by-offset?offset=&limit=``: ``{"data", "offset", "limit", "total"}``."""
    q = req.query
    limit = _int(q, "limit", MAX_PAGE, 1, MAX_PAGE)
    offset = _int(q, "offset", 0, 0, 2**62)
    rows, total = sb.dataset.at(_since(q), offset, limit)
    _slow(sb, fault)
    tail = f',"offset":{offset},"limit":{limit},"total":{total}}}'.encode()
    return Response(200, b'{"data":' + _array(rows) + tail)


def list_page(sb: Sandbox, req: Request, fault: Fault | None, _: str) -> Response:
    """``GET /v1/items/by-page?page=&per_page=`` (pages from 1).

    Answers ``{"data", "page", "per_page", "total_pages"}``.
    """
    q = req.query
    per_page = _int(q, "per_page", MAX_PAGE, 1, MAX_PAGE)
    page = _int(q, "page", 1, 1, 2**62 // MAX_PAGE)
    rows, total = sb.dataset.at(_since(q), (page - 1) * per_page, per_page)
    _slow(sb, fault)
    pages = math.ceil(total / per_page)
    tail = f',"page":{page},"per_page":{per_page},"total_pages":{pages}}}'.encode()
    return Response(200, b'{"data":' + _array(rows) + tail)


def get_item(sb: Sandbox, req: Request, fault: Fault | None, item_id: str) -> Response:
    """``GET /v1/items/{id}``: the record or 404."""
    raw = sb.dataset.get(item_id)
    _slow(sb, fault)
    if raw is None:
        return error(404, "not_found", f"no item {item_id!r}")
    return Response(200, raw)


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {"id": message["id"], "text": message["text"], "created_at": message["created_at"]}


def create_message(sb: Sandbox, req: Request, fault: Fault | None, _: str) -> Response:
    """``POST /v1/messages`` ``{"text": str}`` → 201 ``{"id", "text", "created_at"}``.

    With ``Idempotency-Key``: a repeat with the same body replays the stored answer (with
    ``Idempotent-Replayed: true``), another body gets 422, a repeat while the first is still
    being processed gets 409. A slow fault sleeps with the key reserved, which makes 409 visible.
    """
    try:
        data = json.loads(req.body)
    except ValueError:
        return error(400, "invalid_request", "the body must be a JSON object")
    if not isinstance(data, dict):
        return error(400, "invalid_request", "the body must be a JSON object")
    unknown = sorted(set(data) - {"text"})
    if unknown:
        return error(400, "invalid_request", f"unknown fields: {', '.join(unknown)}")
    text = data.get("text")
    if not isinstance(text, str):
        return error(400, "invalid_request", "text is required and must be a string")
    key = req.headers.get("Idempotency-Key")
    if key is not None:
        if not key or len(key) > 255:
            return error(400, "invalid_request", "Idempotency-Key must be 1 to 255 characters")
        outcome = sb.messages.begin(key, json.dumps(data, sort_keys=True))
        if outcome.kind == "conflict":
            return error(422, "idempotency_key_reused", "this key was used with another body")
        if outcome.kind == "in_use":
            return error(409, "idempotency_key_in_use", "a request with this key is in progress")
        if outcome.kind == "replay":
            _slow(sb, fault)
            return Response(outcome.status, outcome.body, headers=[("Idempotent-Replayed", "true")])
    _slow(sb, fault)
    message = sb.messages.create(text, key, lambda m: (201, dumps(_public(m))))
    public = _public(message)
    if sb.webhooks is not None:
        sb.webhooks.enqueue("message.created", public, message["created_at"])
    if fault is not None and fault.after:
        return fault_response(fault, sb.faults.coin())
    return Response(201, dumps(public), headers=[("Location", f"/v1/messages/{message['id']}")])


def get_message(sb: Sandbox, req: Request, fault: Fault | None, message_id: str) -> Response:
    """``GET /v1/messages/{id}``: the message or 404."""
    message = sb.messages.get(message_id)
    _slow(sb, fault)
    if message is None:
        return error(404, "not_found", f"no message {message_id!r}")
    return Response(200, dumps(_public(message)))


_EXACT: dict[str, dict[str, Endpoint]] = {
    "/v1/items": {"GET": list_cursor},
    "/v1/items/by-offset": {"GET": list_offset},
    "/v1/items/by-page": {"GET": list_page},
    "/v1/items/by-link": {"GET": list_link},
    "/v1/items/by-token": {"GET": list_token},
    "/v1/messages": {"POST": create_message},
}
_BY_ID: tuple[tuple[str, dict[str, Endpoint]], ...] = (
    ("/v1/items/", {"GET": get_item}),
    ("/v1/messages/", {"GET": get_message}),
)


def _resolve(path: str) -> tuple[dict[str, Endpoint], str] | None:
    methods = _EXACT.get(path)
    if methods is not None:
        return methods, ""
    for prefix, by_id in _BY_ID:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            if rest and "/" not in rest:
                return by_id, rest
    return None


def handle(sb: Sandbox, req: Request) -> Response:
    """Answer one ``/v1/...`` request (see the module docstring for the order of checks)."""
    sb.stats.incr("requests")
    found = _resolve(req.path)
    if found is None:
        return error(404, "not_found", f"no such path {req.path}")
    methods, arg = found
    endpoint = methods.get(req.method)
    if endpoint is None:
        response = error(405, "method_not_allowed", f"{req.method} is not allowed here")
        response.headers.append(("Allow", ", ".join(methods)))
        return response
    identity, problem = authenticate(sb, req)
    if identity is None:
        sb.stats.incr("unauthorized")
        return bearer_error(problem)
    rate_headers: list[tuple[str, str]] = []
    if sb.limiter is not None:
        decision = sb.limiter.take(identity)
        rate_headers = decision.headers
        if not decision.allowed:
            sb.stats.incr("rate_limited")
            response = error(429, "rate_limited", "too many requests; see Retry-After")
            response.headers.extend(rate_headers)
            return response
    fault = sb.faults.pick(creates=endpoint is create_message)
    if fault is not None and not fault.after and fault.kind != "slow":
        response = fault_response(fault, sb.faults.coin())
    else:
        try:
            if cycles.asked(req):  # a listing asked to loop (tests of the fleet's loop checks)
                _slow(sb, fault)
                response = cycles.answer(sb.dataset, req, _since(req.query), MAX_PAGE)
            else:
                response = endpoint(sb, req, fault, arg)
        except _BadParam as exc:
            response = error(400, "invalid_request", str(exc))
    if not response.drop:
        response.headers.extend(rate_headers)
    return response
