"""Small pieces every sandbox module uses: times, JSON, and the request/response values.

Handlers are plain functions from a :class:`Request` to a :class:`Response`, so the HTTP
plumbing (``sandbox/handler.py``) is the only code that touches sockets.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any

__all__ = [
    "Request",
    "Response",
    "dumps",
    "error",
    "iso_from_us",
    "json_response",
    "now_us",
    "num",
    "parse_iso",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch (the dataset's time unit)."""
    return time.time_ns() // 1000


def iso_from_us(us: int) -> str:
    """ISO-8601 UTC text with microseconds, like ``2026-11-26T01:02:03.123456Z``."""
    seconds, micros = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def parse_iso(text: str) -> int:
    """Microseconds since the epoch of an ISO-8601 time; a time without zone is UTC.

    A ``+`` that a client forgot to percent-encode arrives as a space; it is put back.

    Raises:
        ValueError: ``text`` is not an ISO-8601 date or time.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if " " not in text:
            raise
        moment = datetime.fromisoformat(text.replace(" ", "+"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def num(value: float) -> int | float:
    """``value`` as an int when it is whole (``3.0`` → ``3``), else unchanged."""
    return int(value) if float(value).is_integer() else value


def dumps(data: Any) -> bytes:
    """Compact JSON bytes: no spaces, UTF-8."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class Request:
    """One HTTP request, already read off the socket.

    Attributes:
        method: ``GET``, ``POST``...
        path: The path without the query string.
        query: Query parameters; the first value of each name.
        headers: The request headers (case-insensitive lookup).
        body: The raw body (empty without ``Content-Length``).
        base_url: ``http://host:port`` as the client addressed the server (for ``Link``).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    base_url: str


@dataclass(slots=True)
class Response:
    """One answer to write, or ``drop=True`` for none at all (the connection is cut).

    Attributes:
        status: HTTP status code.
        body: Raw body bytes.
        content_type: ``Content-Type`` of the body.
        headers: Extra headers, in order.
        drop: Close the connection without writing anything.
    """

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON answer."""
    return Response(status, dumps(data), headers=headers or [])


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    """A JSON error ``{"error": code, "message": message, ...}``."""
    return json_response(status, {"error": code, "message": message, **extra})
