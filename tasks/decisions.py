"""What a guarded request decides (:mod:`tasks.request`), and where its attempts are kept.

A request ends in one of these, which its caller turns into waiting its own way (a call goes
back to the queue with a countdown, a sync run pauses inline or hands off): :class:`Defer`
(not now, no attempt used), :class:`Retry` (failed, try again after a wait), :class:`GiveUp`
(it ends here) and :class:`Doubt` (an earlier request may have taken effect: look first). A
:class:`Ledger` keeps the attempts: a call's journal in Redis, a sync run's count.
"""

from __future__ import annotations

from typing import Any, Protocol

from spark_integrations.errors import ProviderError

__all__ = ["Defer", "Doubt", "GiveUp", "Ledger", "Retry"]


class Defer(Exception):
    """Not now, and not a failure: come back after ``wait`` seconds (no attempt is used)."""

    def __init__(self, wait: float, reason: str) -> None:
        super().__init__(reason)
        self.wait = max(0.0, wait)
        self.reason = reason


class Retry(Exception):
    """The request failed in a way worth trying again after ``wait``, within the policy."""

    def __init__(self, wait: float, error: ProviderError) -> None:
        super().__init__(str(error))
        self.wait = wait
        self.error = error


class GiveUp(Exception):
    """The request ends here; ``unknown``: it may have taken effect, so it is never re-sent."""

    def __init__(self, error: str, *, unknown: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.unknown = unknown


class Doubt(Exception):
    """An earlier request may have taken effect and the provider's data can tell: look first.

    Raised by a ledger's admission (a call's journal finds its request in flight from a lost
    worker, or an answer lost); let through :meth:`tasks.request.GuardedRequest.send` only once
    the breaker and the budget admitted it, so the look goes on that admission's slot."""


class Ledger(Protocol):
    """Where the attempts at one request are kept: a call's journal, a sync run's count."""

    #: True when a request that may have reached the provider can be sent again safely.
    resend_safe: bool

    def queue_admission(self, pipe: Any) -> int:
        """Queue this ledger's commands on the admission pipeline; how many it queued."""

    def read_admission(self, replies: list[Any]) -> None:
        """Read the replies of those commands (raise :class:`GiveUp` on an unknown outcome, or
        :class:`Doubt` when it can be looked for)."""

    def undo_admission(self) -> None:
        """Take back what the admission marked, when the request was not sent after all."""

    def answered(self) -> None:
        """An answer came that says nothing against trying again (a 401, a 4xx)."""

    def resend(self) -> None:
        """The request goes again within this admission (after re-authenticating)."""

    def failed(self) -> tuple[int, float, int]:
        """A failed attempt: (attempts made, seconds since the first, failures in a row)."""

    def start_clock(self) -> None:
        """Start the retry window's clock of this request, or read the one already running.

        Called where a request waits before its admission (for a usable OAuth token), which
        reads no clock of its own: the window then runs across the request's deliveries or
        tasks, not from the object's creation.
        """

    def elapsed(self) -> float:
        """Seconds since the first attempt at this request."""

    def queue_success(self, pipe: Any, result: Any) -> None:
        """Queue what settles a success on ``pipe`` (may queue nothing)."""

    def settled_without_pipeline(self, result: Any) -> None:
        """Settle a success one command at a time (after Redis reloaded its scripts)."""
