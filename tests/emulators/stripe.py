"""A loopback emulator of Stripe's API (v1): the lists a connector syncs and the creates it
sends, with Stripe's auth, idempotency, errors and rate limiter.

What it follows from Stripe's documentation (docs.stripe.com/api):

- **Auth.** A secret (``sk_test_...``) or restricted (``rk_test_...``) key, as
  ``Authorization: Bearer KEY`` or basic auth with the key as user name and no password. No key
  or an unknown one answers 401; a restricted key without the permission answers 403.
- **Lists** (``/v1/customers``, ``charges``, ``payment_intents``, ``invoices``, ``events``):
  ``{"object": "list", "url", "has_more", "data"}``, newest first; ``limit`` (1 to 100,
  default 10), ``starting_after`` / ``ending_before`` (object ids), ``created`` or
  ``created[gt|gte|lt|lte]`` (epoch seconds); events also ``type``.
- **Creates** (``POST /v1/customers``, ``payment_intents``, ``refunds``) take form-encoded
  bodies with nested keys; each creation also records its event (``customer.created``, ...).
- **Idempotency.** ``Idempotency-Key`` on a POST: the first answer (status and body, 500s
  included) is saved once the endpoint ran, and a repeat with the same key gets it again with
  ``Idempotent-Replayed: true``; the same key with other params answers 400
  ``idempotency_error``. A request refused by validation saves nothing.
- **Errors**: ``{"error": {"type", "code", "decline_code", "message", "param", "doc_url"}}``;
  the rate limiter answers 429 ``rate_limit`` past ``limit`` reads or writes a second per key
  (25 each in test mode by Stripe's documentation); Stripe sends no rate-limit headers.

Errors to inject by class (``inject("NAME")``): ``card_declined`` (402 card_error),
``rate_limit`` (429), ``lock_timeout`` (429, ``Stripe-Should-Retry: true``), ``api_error``
(500), ``api_error_retry`` / ``api_error_no_retry`` (500 with ``Stripe-Should-Retry: true`` /
``false``), ``authentication`` (401), ``permission`` (403), ``idempotency_error`` (400),
``invalid_request`` (400 parameter_missing), ``not_found`` (404), and ``lost_answer``: the
request is carried out, then the connection is closed without an answer.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from functools import partial
from typing import Any

from tests.emulators.common import Emulator, Limiter, Request, Response, Route
from tests.emulators.stripe_errors import NO_KEY, error, injected_answer
from tests.emulators.stripe_objects import canonical, decode_form, new_id, stripe_object
from tests.emulators.stripe_writes import (
    create_customer,
    create_payment_intent,
    create_refund,
    public,
)

__all__ = ["Stripe"]

LISTS = {
    "customers": "customer",
    "charges": "charge",
    "payment_intents": "payment_intent",
    "invoices": "invoice",
    "events": "event",
    "refunds": "refund",
}


class Stripe(Emulator):
    """The emulator; ``keys`` maps each accepted key to None (all permissions) or the set of
    permissions of a restricted key (``customer_read``, ``payment_intent_write``, ...)."""

    name = "stripe"

    def __init__(
        self,
        *,
        keys: dict[str, set[str] | None] | None = None,
        limit: int = 25,
        version: str = "2024-06-20",
    ) -> None:
        """``limit``: reads and (separately) writes a second per key before 429 ``rate_limit``."""
        self.keys = dict(keys if keys is not None else {"sk_test_emulator": None})
        self.version = version
        self.limiter = Limiter(limit, 1.0)
        self._data_lock = threading.RLock()
        self.objects: dict[str, list[dict[str, Any]]] = {kind: [] for kind in LISTS.values()}
        self.idempotency: dict[tuple[str, str], dict[str, Any]] = {}
        self._seq = 0
        super().__init__()

    # -- data ----------------------------------------------------------------------------

    def reset_state(self) -> None:
        with self._data_lock:
            for items in self.objects.values():
                items.clear()
            self.idempotency.clear()

    def add(self, kind: str, created: int | None = None, **fields: Any) -> dict[str, Any]:
        """Store a new object of ``kind`` (``customer``, ``charge``, ...) and return it."""
        with self._data_lock:
            self._seq += 1
            when = int(time.time()) if created is None else created
            made = stripe_object(kind, fields.pop("id", None) or new_id(kind), when, fields)
            made["_seq"] = self._seq
            self.objects[kind].append(made)
            return made

    def seed(
        self, kind: str, count: int, *, start: int = 1_700_000_000, step: int = 1, **fields: Any
    ) -> list[str]:
        """Add ``count`` objects of ``kind`` created ``step`` seconds apart; their ids."""
        return [self.add(kind, start + i * step, **fields)["id"] for i in range(count)]

    def _event(self, type_: str, obj: dict[str, Any]) -> None:
        self.add(
            "event",
            obj["created"],
            type=type_,
            data={"object": public(obj)},
            request={"id": None, "idempotency_key": None},
        )

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` exist (for assertions)."""
        with self._data_lock:
            return len(self.objects[kind])

    # -- routes --------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        routes = [
            Route("GET", f"/v1/{name}", self._api(self._lister(kind), kind, False), f"list_{name}")
            for name, kind in LISTS.items()
        ]
        routes += [
            Route(
                "POST",
                "/v1/customers",
                self._api(partial(create_customer, self), "customer", True),
                "create_customer",
            ),
            Route(
                "POST",
                "/v1/payment_intents",
                self._api(partial(create_payment_intent, self), "payment_intent", True),
                "create_payment_intent",
            ),
            Route(
                "POST",
                "/v1/refunds",
                self._api(partial(create_refund, self), "refund", True),
                "create_refund",
            ),
        ]
        return routes

    def not_found(self, req: Request) -> Response:
        return error(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({req.method}: {req.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def _api(self, handler: Any, kind: str, write: bool) -> Any:
        """``handler`` behind auth, the rate limiter and (for writes) idempotency."""

        def guarded(req: Request) -> Response:
            key, refused = self._authenticate(req, kind, write)
            if refused is not None:
                return refused
            allowed, _, _ = self.limiter.hit(f"{key}:{'write' if write else 'read'}")
            if not allowed:
                with self.lock:
                    self.counters["limit_exceeded"] += 1
                return error(
                    429,
                    "invalid_request_error",
                    "Request rate limit exceeded. You can learn more about rate limits here "
                    "https://stripe.com/docs/rate-limits.",
                    code="rate_limit",
                )
            if write:
                answer = self._idempotent(req, key, handler)
            else:
                with self._data_lock:
                    answer = handler(req)
            answer.headers.setdefault("Request-Id", "req_" + secrets.token_hex(7))
            answer.headers["Stripe-Version"] = self.version
            return answer

        return guarded

    def _authenticate(self, req: Request, kind: str, write: bool) -> tuple[str, Response | None]:
        scheme, _, value = req.headers.get("authorization", "").partition(" ")
        key = value.strip()
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(key).decode().partition(":")[0]
            except ValueError:
                key = ""
        elif scheme.lower() != "bearer":
            key = ""
        if not key:
            return "", error(401, "invalid_request_error", NO_KEY)
        if key not in self.keys:
            shown = key[:8] + "*" * max(len(key) - 12, 4) + key[-4:]
            return "", error(401, "invalid_request_error", f"Invalid API Key provided: {shown}")
        allowed = self.keys[key]
        needed = f"{kind}_{'write' if write else 'read'}"
        if allowed is not None and needed not in allowed:
            return "", error(
                403,
                "invalid_request_error",
                f"The provided key '{key[:8]}***{key[-4:]}' does not have the required "
                "permissions for this endpoint on account 'acct_1Emulator'. Having the "
                f"'rak_{needed}' permission would allow this request to continue.",
            )
        return key, None

    def _idempotent(self, req: Request, key: str, handler: Any) -> Response:
        idem = req.headers.get("idempotency-key")
        params = self.params(req)
        fingerprint = f"{req.method} {req.path} {canonical(params)}"
        with self._data_lock:
            saved = self.idempotency.get((key, idem)) if idem else None
            if saved is not None:
                if saved["fingerprint"] != fingerprint:
                    return error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{idem}' if you "
                        "meant to execute a different request.",
                    )
                with self.lock:
                    self.counters["replayed"] += 1
                headers = {
                    **saved["headers"],
                    "Idempotent-Replayed": "true",
                    "Original-Request": saved["request"],
                    "Idempotency-Key": idem or "",
                }
                return Response(saved["status"], saved["body"], headers)
            answer = handler(req)
            if idem:
                answer.headers["Idempotency-Key"] = idem
                if not answer.headers.pop("X-Emulator-Validation", None):
                    answer.headers.setdefault("Request-Id", "req_" + secrets.token_hex(7))
                    self.idempotency[(key, idem)] = {
                        "fingerprint": fingerprint,
                        "status": answer.status,
                        "body": answer.body,
                        "headers": {"Content-Type": "application/json"},
                        "request": answer.headers["Request-Id"],
                    }
            answer.headers.pop("X-Emulator-Validation", None)
            return answer

    @staticmethod
    def params(req: Request) -> dict[str, Any]:
        """The request's params: the query (GET) or the form body (POST), nested."""
        if req.method == "GET":
            pairs = [(k, v) for k, values in req.query.items() for v in values]
        else:
            from urllib.parse import parse_qsl

            pairs = parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        return decode_form(pairs)

    # -- lists ---------------------------------------------------------------------------

    def _lister(self, kind: str) -> Any:
        def handler(req: Request) -> Response:
            return self.list_objects(req, kind)

        return handler

    def list_objects(self, req: Request, kind: str) -> Response:
        """One page of a list, newest first."""
        try:
            params = self.params(req)
        except ValueError as exc:
            return error(400, "invalid_request_error", str(exc))
        try:
            limit = int(params.get("limit", 10))
        except (TypeError, ValueError):
            limit = -1
        if not 1 <= limit <= 100:
            return error(
                400,
                "invalid_request_error",
                "This value must be greater than or equal to 1 and less than or equal to 100.",
                code="parameter_invalid_integer",
                param="limit",
            )
        items = sorted(self.objects[kind], key=lambda o: (o["created"], o["_seq"]), reverse=True)
        created = params.get("created")
        try:
            items = [o for o in items if _created_matches(o["created"], created)]
        except ValueError:
            return error(400, "invalid_request_error", "Invalid integer", param="created")
        if kind == "event" and params.get("type"):
            items = [o for o in items if o["type"] == params["type"]]
        after, before = params.get("starting_after"), params.get("ending_before")
        has_more = False
        for cursor, name in ((after, "starting_after"), (before, "ending_before")):
            if cursor and cursor not in [o["id"] for o in self.objects[kind]]:
                return error(
                    400,
                    "invalid_request_error",
                    f"No such {kind}: '{cursor}'",
                    code="resource_missing",
                    param=name,
                )
        ids = [o["id"] for o in items]
        if after:
            start = ids.index(after) + 1 if after in ids else len(ids)
            page = items[start : start + limit]
            has_more = start + limit < len(items)
        elif before:
            end = ids.index(before) if before in ids else 0
            page = items[max(end - limit, 0) : end]
            has_more = end - limit > 0
        else:
            page = items[:limit]
            has_more = limit < len(items)
        name = next(n for n, k in LISTS.items() if k == kind)
        body = {
            "object": "list",
            "url": f"/v1/{name}",
            "has_more": has_more,
            "data": [public(o) for o in page],
        }
        return Response.json(body)

    def _created(self, kind: str) -> None:
        with self.lock:
            self.counters["created"] += 1
            self.counters[f"created_{kind}"] += 1

    # -- injected errors -----------------------------------------------------------------

    def injected(self, kind: str, req: Request) -> Response:
        if kind == "lost_answer":  # carried out, then the answer is lost on the way back
            route, groups = self._match(req)
            if route is not None:
                route.handler(req, **groups)
            return Response(drop=True)
        answer = injected_answer(kind)
        return answer if answer is not None else super().injected(kind, req)


def _created_matches(created: int, rule: Any) -> bool:
    if rule is None:
        return True
    if not isinstance(rule, dict):
        return created == int(rule)
    checks = {
        "gt": lambda v: created > v,
        "gte": lambda v: created >= v,
        "lt": lambda v: created < v,
        "lte": lambda v: created <= v,
    }
    return all(checks[op](int(value)) for op, value in rule.items() if op in checks)
