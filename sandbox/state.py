"""Shared, thread-safe state: counters, messages with their idempotency records, rate buckets.

Every structure here takes the sandbox's one :class:`threading.Lock` and holds it only for
dictionary work, never across I/O or sleeps, so request threads barely contend.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from spark_integrations.sandbox.common import iso_from_us, now_us, num

__all__ = ["COUNTERS", "IdemOutcome", "MessageStore", "RateDecision", "RateLimiter", "Stats"]

# The counters of ``GET /_sandbox/stats`` (plus ``records``, the dataset size).
COUNTERS: tuple[str, ...] = (
    "requests",
    "unauthorized",
    "rate_limited",
    "faults_injected",
    "tokens_issued",
    "token_refreshes",
    "early_refreshes",
    "invalid_grants",
    "client_credentials_grants",
    "authorization_codes",
    "idempotent_replays",
    "messages_created",
    "items_updated",
    "webhooks_sent",
    "webhooks_failed",
    "webhook_attempts",
)


class Stats:
    """Named counters; ``reset`` zeroes them without touching data."""

    def __init__(self, lock: threading.Lock) -> None:
        """Start every counter at zero; ``lock`` is the sandbox's one lock."""
        self._lock = lock
        self._counts = dict.fromkeys(COUNTERS, 0)

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def incr_locked(self, name: str, amount: int = 1) -> None:
        """Like :meth:`incr` for a caller that already holds the lock."""
        self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)


@dataclass(slots=True)
class _IdemRecord:
    fingerprint: str
    done: bool = False
    status: int = 0
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class IdemOutcome:
    """What an ``Idempotency-Key`` lookup found.

    Attributes:
        kind: ``new`` (the key is now reserved for this request), ``replay`` (a stored answer),
            ``conflict`` (the key was used with another body) or ``in_use`` (still processing).
        status: The stored status, for ``replay``.
        body: The stored body, for ``replay``.
    """

    kind: Literal["new", "replay", "conflict", "in_use"]
    status: int = 0
    body: bytes = b""


class MessageStore:
    """Messages in creation order, and the idempotency records that guard their creation.

    Idempotency keys are global (not per credential): the first request with a key reserves it,
    its answer is stored with the message in one step, so a retry after a lost answer replays it.
    """

    def __init__(self, lock: threading.Lock, stats: Stats) -> None:
        """No message yet; ``lock`` is the sandbox's one lock."""
        self._lock = lock
        self._stats = stats
        self._messages: dict[str, dict[str, Any]] = {}
        self._idem: dict[str, _IdemRecord] = {}

    def begin(self, key: str, fingerprint: str) -> IdemOutcome:
        """Look up ``key``: reserve it if new, else say how the earlier use ended."""
        with self._lock:
            record = self._idem.get(key)
            if record is None:
                self._idem[key] = _IdemRecord(fingerprint)
                return IdemOutcome("new")
            if record.fingerprint != fingerprint:
                return IdemOutcome("conflict")
            if not record.done:
                return IdemOutcome("in_use")
            self._stats.incr_locked("idempotent_replays")
            return IdemOutcome("replay", record.status, record.body)

    def create(
        self, text: str, key: str | None, answer: Callable[[dict[str, Any]], tuple[int, bytes]]
    ) -> dict[str, Any]:
        """Create a message; with ``key``, store ``answer(message)`` as its replayable answer.

        Args:
            text: The message text.
            key: The request's Idempotency-Key, or None.
            answer: ``message -> (status, body bytes)``, called under the lock.

        Returns:
            The message ``{"id", "text", "idempotency_key", "created_at"}``.
        """
        message_id = "msg_" + secrets.token_hex(10)
        message: dict[str, Any] = {
            "id": message_id,
            "text": text,
            "idempotency_key": key,
            "created_at": iso_from_us(now_us()),
        }
        with self._lock:
            self._messages[message_id] = message
            self._stats.incr_locked("messages_created")
            if key is not None:
                status, body = answer(message)
                record = self._idem.setdefault(key, _IdemRecord(""))
                record.done, record.status, record.body = True, status, body
        return message

    def get(self, message_id: str) -> dict[str, Any] | None:
        """One message, or None."""
        with self._lock:
            return self._messages.get(message_id)

    def all(self) -> list[dict[str, Any]]:
        """Every message, oldest first."""
        with self._lock:
            return list(self._messages.values())


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The verdict of a token bucket and the headers that describe it.

    Attributes:
        allowed: A token was taken.
        headers: ``X-RateLimit-*`` headers, plus ``Retry-After`` when refused.
    """

    allowed: bool
    headers: list[tuple[str, str]]


class RateLimiter:
    """One token bucket per credential: ``rate`` tokens/s, capacity ``max(1, rate * burst)``."""

    def __init__(self, rate: float, burst: float, lock: threading.Lock) -> None:
        """Buckets start full, created on a credential's first request."""
        self.rate = rate
        self.capacity = max(1.0, rate * burst)
        self._limit_text = str(num(rate))
        self._lock = lock
        self._buckets: dict[str, list[float]] = {}

    def take(self, identity: str) -> RateDecision:
        """Take one token from ``identity``'s bucket if it has one."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(identity)
            if bucket is None:
                bucket = self._buckets[identity] = [self.capacity, now]
            tokens = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            bucket[0], bucket[1] = tokens, now
        reset = math.ceil(time.time() + (self.capacity - tokens) / self.rate)
        headers = [
            ("X-RateLimit-Limit", self._limit_text),
            ("X-RateLimit-Remaining", str(math.floor(tokens))),
            ("X-RateLimit-Reset", str(reset)),
        ]
        if not allowed:
            headers.append(("Retry-After", str(max(1, math.ceil((1.0 - tokens) / self.rate)))))
        return RateDecision(allowed, headers)
