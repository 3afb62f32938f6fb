"""GitHub's error answers, for the GitHub emulator: the documented bodies (``message``,
``documentation_url``, ``status``) and headers of each class of error a test injects."""

from __future__ import annotations

import math
import time

from tests.emulators.common import Response

__all__ = ["error", "injected_answer", "validation"]

DOCS = "https://docs.github.com/rest"
LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"


def error(status: int, message: str, docs: str = DOCS, **headers: str) -> Response:
    """GitHub's error body: ``message``, ``documentation_url`` and ``status`` (as text)."""
    body = {"message": message, "documentation_url": docs, "status": str(status)}
    return Response.json(body, status, **headers)


def validation(resource: str, field: str, code: str = "missing_field") -> Response:
    """422 ``Validation Failed`` with GitHub's ``errors`` list."""
    body = {
        "message": "Validation Failed",
        "errors": [{"resource": resource, "code": code, "field": field}],
        "documentation_url": DOCS,
        "status": "422",
    }
    return Response.json(body, 422)


def injected_answer(kind: str, limit: int) -> Response | None:
    """The answer of injected error class ``kind`` (``NAME`` or ``NAME:SECONDS``), or None."""
    name, _, seconds = kind.partition(":")
    wait = int(seconds or 1)
    reset = str(math.ceil(time.time() + wait))
    secondary = (
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
        "again. If you reach out to GitHub Support for help, please include the request ID "
        "0000:0000:0000000:0000000:00000000."
    )
    secondary_docs = LIMIT_DOCS + "#about-secondary-rate-limits"
    answers = {
        "secondary": lambda: error(403, secondary, secondary_docs, **{"retry-after": str(wait)}),
        "secondary_429": lambda: error(
            429, secondary, secondary_docs, **{"retry-after": str(wait)}
        ),
        "secondary_reset": lambda: error(
            403,
            secondary,
            secondary_docs,
            **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
        ),
        "primary": lambda: error(
            403,
            "API rate limit exceeded for user ID 1.",
            LIMIT_DOCS + "#about-primary-rate-limits",
            **{
                "x-ratelimit-limit": str(limit),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": str(limit),
                "x-ratelimit-reset": reset,
                "x-ratelimit-resource": "core",
            },
        ),
        "server_error": lambda: error(502, "Server Error"),
        "unavailable": lambda: error(503, "Service Unavailable"),
        "bad_credentials": lambda: error(401, "Bad credentials"),
        "forbidden": lambda: error(
            403,
            "Resource not accessible by personal access token",
            **{"x-ratelimit-remaining": "4999", "x-ratelimit-reset": reset},
        ),
        "not_found": lambda: error(404, "Not Found"),
        "validation": lambda: validation("Issue", "title"),
    }
    return answers[name]() if name in answers else None
