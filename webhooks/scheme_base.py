"""What every webhook signature scheme shares: the outcomes, one read of the request, and the
checks that must be done the same way everywhere.

The outcomes are :class:`Refused` (a delivery that must not be stored, with the status the
gateway answers and a reason from :data:`REASONS`), :class:`Verified` (a delivery to store,
with its delivery id, event type and parsed payload) and :class:`Answer` (a handshake the
gateway replies to at once, storing nothing).

Shared checks, so no scheme does them its own way:

- a header read twice (two lines with the same name) is refused, never one of them picked;
- signatures are compared in constant time (:func:`hmac.compare_digest`) on bytes, so a header
  holding any character at all is a mismatch, not an exception;
- a timestamp is plain ASCII digits, at most the tolerance either side of the gateway's clock;
- a payload is strict JSON (no ``NaN`` nor ``Infinity``) in UTF-8, and ids and event types fit
  the store (at most 200 printable characters).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spark_integrations.errors import UsageError

__all__ = [
    "REASONS",
    "Answer",
    "Delivery",
    "Refused",
    "Verified",
    "digest_id",
    "label",
    "parse_json",
    "same",
]

#: Why a delivery was refused (a bounded set: metrics label their counts with it), and the
#: status the gateway answers for each: 401 when the sender is not proven, 400 when it is
#: proven (or cannot matter) but the request is unusable.
STATUSES: dict[str, int] = {
    "no_secret": 401,
    "unknown_scheme": 400,
    "missing_signature": 401,
    "doubled_header": 400,
    "bad_timestamp": 401,
    "stale_timestamp": 401,
    "bad_signature": 401,
    "malformed": 400,
}
REASONS: tuple[str, ...] = tuple(STATUSES)

#: Longest delivery id and event type the store holds (``webhook_events`` columns).
MAX_LABEL = 200
#: Longest timestamp header read (digits); enough for any date, short enough to stay cheap.
MAX_TIMESTAMP_DIGITS = 12


class Refused(UsageError):
    """Raised when a webhook delivery fails its scheme's checks and must not be stored."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        #: One of :data:`REASONS`.
        self.reason = reason
        #: The HTTP status to answer: 401 (sender not proven) or 400 (request unusable).
        self.status = STATUSES[reason]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, str(self)))


@dataclass(frozen=True)
class Answer:
    """A handshake's reply (Slack's challenge, Discord's PING, Graph's validation token)."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Verified:
    """A delivery whose sender is proven.

    With ``answer`` set the delivery is a handshake: reply with it at once and store nothing.
    """

    delivery_id: str
    event_type: str | None
    payload: Any
    answer: Answer | None = None


class Delivery:
    """One request as a scheme reads it: the secret, headers by name, query, body and clock."""

    def __init__(
        self,
        *,
        secret: str,
        headers: Sequence[tuple[str, str]],
        query: Mapping[str, str],
        body: bytes,
        now: float,
        tolerance: int,
    ) -> None:
        self.secret = secret
        self.query = query
        self.body = bytes(body)
        self.now = float(now)
        self.tolerance = max(0, int(tolerance))
        self._headers: dict[str, list[str]] = {}
        for name, value in headers:
            self._headers.setdefault(str(name).lower(), []).append(str(value))

    def header(self, name: str) -> str | None:
        """The one value of header ``name`` (empty counts as absent); refused if sent twice."""
        values = self._headers.get(name, [])
        if len(values) > 1:
            raise Refused("doubled_header", f"The {name} header was sent more than once.")
        return values[0] if values and values[0] else None

    def required(self, name: str) -> str:
        """The value of header ``name``, refused as an unsigned request when it is missing."""
        value = self.header(name)
        if value is None:
            raise Refused("missing_signature", f"The {name} header is missing.")
        return value

    def timestamp(self, name: str, value: str | None = None) -> int:
        """The signed timestamp of header ``name`` (or ``value``): digits, within tolerance."""
        raw = self.required(name) if value is None else value
        if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_TIMESTAMP_DIGITS):
            raise Refused("bad_timestamp", f"The {name} timestamp is not whole seconds.")
        stamp = int(raw)
        # Written to fail closed: a clock that is not a number refuses rather than accepts.
        if not abs(self.now - stamp) <= self.tolerance:
            raise Refused(
                "stale_timestamp",
                f"The {name} timestamp is more than {self.tolerance} s away from the gateway's "
                "clock (a replay, or a clock that is off).",
            )
        return stamp


def same(expected: bytes, given: str | bytes) -> bool:
    """Whether ``given`` equals ``expected``, compared in constant time; any text is accepted."""
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected, given)


def hex_digest(given: str) -> bytes | None:
    """The bytes a hexadecimal signature stands for, or None when it is not hexadecimal."""
    if not given.isascii():
        return None
    try:
        return bytes.fromhex(given)
    except ValueError:
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes | str, what: str = "The body") -> Any:
    """Strict JSON of a verified body, or :class:`Refused` ``malformed`` (400)."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError, TypeError):
        raise Refused("malformed", f"{what} is not valid JSON in UTF-8.") from None


def label(value: Any, what: str) -> str:
    """``value`` as a delivery id or event type the store holds, or :class:`Refused` (400)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Refused("malformed", f"The {what} is missing or not a string.")
    text = str(value)
    if not (0 < len(text) <= MAX_LABEL and text.isprintable()):
        raise Refused("malformed", f"The {what} must be 1 to {MAX_LABEL} printable characters.")
    return text


def optional_label(value: Any, what: str) -> str | None:
    """Like :func:`label`, but a missing (None) value stays None."""
    return None if value is None else label(value, what)


def digest_id(signed: bytes) -> str:
    """The delivery id of a sender that gives none: ``sha256:`` and the digest of what it signed."""
    return "sha256:" + hashlib.sha256(signed).hexdigest()
