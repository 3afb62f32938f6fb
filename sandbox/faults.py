"""Injected faults: the failures a real provider shows, at a chosen rate.

Kinds: ``500``, ``502``, ``503`` (JSON or HTML bodies, 503 sometimes with ``Retry-After: 1``),
``slow`` (sleep, then answer normally), ``drop`` (close the connection without a byte),
``malformed`` (200 with truncated JSON) and, only when named, ``429`` (with
``Retry-After: 1``). They strike before the request's effect, except about 20% of faults on
``POST /v1/messages``, which strike after it: the message exists but its answer is lost, which
is what idempotency keys are for.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from spark_integrations.sandbox.common import Response, dumps
from spark_integrations.sandbox.state import Stats

__all__ = ["AFTER_KINDS", "AFTER_SHARE", "Fault", "FaultInjector", "fault_response"]

# Kinds that can strike after the effect, and the share of message-creation faults that do.
AFTER_KINDS: tuple[str, ...] = ("drop", "500", "502")
AFTER_SHARE = 0.2

_MALFORMED = b'{"data":[{"id":"item-000001","name":"alpha 1","value":4'
_HTML = (
    "<!doctype html><html><head><title>{status} {reason}</title></head>"
    "<body><center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>"
)
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inject.

    Attributes:
        kind: One of ``sandbox.options.ALL_FAULT_KINDS``.
        after: Strike after the effect (only on message creation).
    """

    kind: str
    after: bool = False


class FaultInjector:
    """Decides, per API request, whether and how to fail; rate and kinds can change at run time."""

    def __init__(
        self,
        rate: float,
        kinds: tuple[str, ...],
        rng: random.Random,
        lock: threading.Lock,
        stats: Stats,
    ) -> None:
        """``rng`` and ``lock`` are the sandbox's; draws happen under the lock."""
        self.rate = rate
        self.kinds = kinds
        self._rng = rng
        self._lock = lock
        self._stats = stats

    def configure(self, rate: float, kinds: tuple[str, ...]) -> None:
        """Change the fault rate and kinds (``POST /_sandbox/faults``)."""
        with self._lock:
            self.rate, self.kinds = rate, kinds

    def pick(self, creates: bool) -> Fault | None:
        """A fault for this request, or None; ``creates`` is True for ``POST /v1/messages``."""
        if self.rate <= 0.0:
            return None
        with self._lock:
            rng = self._rng
            if rng.random() >= self.rate:
                return None
            self._stats.incr_locked("faults_injected")
            if creates:
                after = [k for k in AFTER_KINDS if k in self.kinds]
                if after and rng.random() < AFTER_SHARE:
                    return Fault(rng.choice(after), after=True)
            return Fault(rng.choice(self.kinds))

    def coin(self) -> float:
        """A uniform draw in [0, 1), for the details of an answer."""
        with self._lock:
            return self._rng.random()


def fault_response(fault: Fault, coin: float) -> Response:
    """The answer of an error fault (not ``slow``); ``coin`` picks the JSON or HTML variant."""
    if fault.kind == "drop":
        return Response(0, drop=True)
    if fault.kind == "malformed":
        return Response(200, _MALFORMED)
    if fault.kind == "429":
        body = dumps({"error": "rate_limited", "message": "too many requests; see Retry-After"})
        return Response(429, body, headers=[("Retry-After", "1")])
    status = int(fault.kind)
    headers = [("Retry-After", "1")] if status == 503 and coin < 0.5 else []
    if coin < 0.25 or 0.5 <= coin < 0.75:
        body = _HTML.format(status=status, reason=_REASONS[status]).encode()
        return Response(status, body, "text/html; charset=utf-8", headers)
    code = {500: "internal_error", 502: "bad_gateway", 503: "service_unavailable"}[status]
    return Response(status, dumps({"error": code, "message": _REASONS[status]}), headers=headers)
