"""Stripe's error answers, for the Stripe emulator: the error object (``type``, ``code``,
``decline_code``, ``message``, ``param``, ``doc_url``) of each class of error a test injects."""

from __future__ import annotations

import secrets
from typing import Any

from tests.emulators.common import Response
from tests.emulators.stripe_objects import new_id

__all__ = ["LOCK_TIMEOUT", "NO_KEY", "error", "injected_answer", "missing"]

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


def _with(answer: Response, headers: dict[str, str]) -> Response:
    answer.headers.update(headers)
    return answer


def injected_answer(kind: str) -> Response | None:
    """The answer of injected error class ``kind``, or None when it is not one."""
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
        return None
    answer = answers[kind]()
    answer.headers.pop("X-Emulator-Validation", None)
    return answer
