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
from typing import Any

from tests.emulators.common import Emulator, Limiter, Request, Response, Route
from tests.emulators.stripe_objects import canonical, decode_form, new_id, stripe_object

__all__ = ["Stripe"]

LISTS = {
    "customers": "customer",
    "charges": "charge",
    "payment_intents": "payment_intent",
    "invoices": "invoice",
    "events": "event",
    "refunds": "refund",
}
NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)
LOCK_TIMEOUT = (
    "This object cannot be accessed right now because another API request or Stripe process is "
    "currently accessing it. If you see this error intermittently, retry the request. If you "
    "see this error frequently and are making multiple concurrent requests to a single object, "
    "make your requests serially or at a lower rate. See https://stripe.com/docs/rate-limits "
    "for more information."
)


def error(status: int, type_: str, message: str, **fields: Any) -> Response:
    """Stripe's error object; ``code`` fields also get their ``doc_url``."""
    body: dict[str, Any] = {"type": type_, "message": message, **fields}
    if fields.get("code"):
        body["doc_url"] = "https://stripe.com/docs/error-codes/" + fields["code"].replace("_", "-")
    headers = {"Request-Id": "req_" + secrets.token_hex(7)}
    return Response.json({"error": body}, status, **headers)


def missing(param: str) -> Response:
    """400 ``parameter_missing`` (validation: never saved for idempotency)."""
    answer = error(
        400,
        "invalid_request_error",
        f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
    )
    answer.headers["X-Emulator-Validation"] = "1"
    return answer


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
                self._api(self.create_customer, "customer", True),
                "create_customer",
            ),
            Route(
                "POST",
                "/v1/payment_intents",
                self._api(self.create_payment_intent, "payment_intent", True),
                "create_payment_intent",
            ),
            Route(
                "POST",
                "/v1/refunds",
                self._api(self.create_refund, "refund", True),
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

    # -- creates -------------------------------------------------------------------------

    def create_customer(self, req: Request) -> Response:
        p = self.params(req)
        fields = {k: p[k] for k in ("email", "name", "description", "phone") if k in p}
        made = self.add("customer", metadata=p.get("metadata") or {}, **fields)
        self._event("customer.created", made)
        self._created("customer")
        return Response.json(public(made))

    def create_payment_intent(self, req: Request) -> Response:
        p = self.params(req)
        for name in ("amount", "currency"):
            if name not in p:
                return missing(name)
        try:
            amount = int(p["amount"])
        except (TypeError, ValueError):
            return error(
                400,
                "invalid_request_error",
                "Invalid integer: " + str(p["amount"]),
                code="parameter_invalid_integer",
                param="amount",
            )
        confirm = str(p.get("confirm", "false")) == "true"
        made = self.add(
            "payment_intent",
            amount=amount,
            currency=p["currency"],
            customer=p.get("customer"),
            description=p.get("description"),
            metadata=p.get("metadata") or {},
            payment_method=p.get("payment_method"),
            status="succeeded" if confirm else "requires_payment_method",
            amount_received=amount if confirm else 0,
            last_payment_error=None,
            latest_charge=None,
        )
        self._event("payment_intent.created", made)
        if confirm:
            charge = self.add(
                "charge",
                amount=amount,
                amount_captured=amount,
                amount_refunded=0,
                captured=True,
                paid=True,
                refunded=False,
                currency=p["currency"],
                customer=p.get("customer"),
                payment_intent=made["id"],
                status="succeeded",
            )
            made["latest_charge"] = charge["id"]
            self._event("charge.succeeded", charge)
            self._event("payment_intent.succeeded", made)
        self._created("payment_intent")
        return Response.json(public(made))

    def create_refund(self, req: Request) -> Response:
        p = self.params(req)
        if not p.get("charge") and not p.get("payment_intent"):
            return missing("charge")
        charge = self._charge_of(p)
        if isinstance(charge, Response):
            return charge
        left = charge["amount"] - charge.get("amount_refunded", 0)
        amount = int(p.get("amount", left))
        if left <= 0:
            return error(
                400,
                "invalid_request_error",
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        if amount > left:
            return error(
                400,
                "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                param="amount",
            )
        charge["amount_refunded"] = charge.get("amount_refunded", 0) + amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        made = self.add(
            "refund",
            amount=amount,
            charge=charge["id"],
            payment_intent=charge.get("payment_intent"),
            currency=charge.get("currency", "usd"),
            metadata=p.get("metadata") or {},
            reason=p.get("reason"),
            status="succeeded",
        )
        self._event("charge.refunded", charge)
        self._created("refund")
        return Response.json(public(made))

    def _charge_of(self, p: dict[str, Any]) -> dict[str, Any] | Response:
        if p.get("charge"):
            found = [c for c in self.objects["charge"] if c["id"] == p["charge"]]
            if not found:
                return error(
                    400,
                    "invalid_request_error",
                    f"No such charge: '{p['charge']}'",
                    code="resource_missing",
                    param="charge",
                )
            return found[0]
        intents = [i for i in self.objects["payment_intent"] if i["id"] == p["payment_intent"]]
        if not intents:
            return error(
                400,
                "invalid_request_error",
                f"No such payment_intent: '{p['payment_intent']}'",
                code="resource_missing",
                param="payment_intent",
            )
        charges = [c for c in self.objects["charge"] if c["id"] == intents[0].get("latest_charge")]
        if not charges:
            return error(
                400,
                "invalid_request_error",
                f"This PaymentIntent ({intents[0]['id']}) does not have a successful charge to "
                "refund.",
                param="payment_intent",
            )
        return charges[0]

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
        answers = {
            "card_declined": lambda: error(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code="generic_decline",
                charge=new_id("charge"),
            ),
            "rate_limit": lambda: error(
                429,
                "invalid_request_error",
                "Request rate limit exceeded. You can learn more about rate limits here "
                "https://stripe.com/docs/rate-limits.",
                code="rate_limit",
            ),
            "lock_timeout": lambda: _with(
                error(429, "invalid_request_error", LOCK_TIMEOUT, code="lock_timeout"),
                {"Stripe-Should-Retry": "true"},
            ),
            "api_error": lambda: error(500, "api_error", "An unknown error occurred"),
            "api_error_retry": lambda: _with(
                error(500, "api_error", "An unknown error occurred"),
                {"Stripe-Should-Retry": "true"},
            ),
            "api_error_no_retry": lambda: _with(
                error(500, "api_error", "An unknown error occurred"),
                {"Stripe-Should-Retry": "false"},
            ),
            "authentication": lambda: error(
                401, "invalid_request_error", "Invalid API Key provided: sk_test_****1234"
            ),
            "permission": lambda: error(
                403,
                "invalid_request_error",
                "The provided key does not have the required permissions for this endpoint.",
            ),
            "idempotency_error": lambda: error(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they "
                "were first used with.",
            ),
            "invalid_request": lambda: missing("amount"),
            "not_found": lambda: error(
                404,
                "invalid_request_error",
                "No such customer: 'cus_missing'",
                code="resource_missing",
                param="id",
            ),
        }
        if kind not in answers:
            return super().injected(kind, req)
        answer = answers[kind]()
        answer.headers.pop("X-Emulator-Validation", None)
        return answer


def _with(answer: Response, headers: dict[str, str]) -> Response:
    answer.headers.update(headers)
    return answer


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as the API shows it (without the emulator's bookkeeping)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


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
