"""The one retry policy of the fleet: how long to wait, and whether the budget allows it.

A provider's own wait (``Retry-After``, a rate-limit reset) always wins over computed backoff;
otherwise exponential backoff with full jitter spreads retries so a fleet does not return in
step. Fatal errors never retry. Waits for the fleet's rate budget, an open circuit breaker or an
idempotent twin in flight are not failures: they use none of the retry budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryBudget", "backoff", "retry_wait"]

BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0


def backoff(failures: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Full-jitter exponential backoff after ``failures`` failed attempts (1 or more)."""
    ceiling = min(cap, base * (2 ** max(0, failures - 1)))
    return random.uniform(0, ceiling)


def retry_wait(failures: int, provider_wait: float | None) -> float:
    """Seconds before the next attempt: the provider's wait if it gave one, else backoff.

    A small jitter on top of the provider's wait keeps the fleet from returning all at once.
    """
    if provider_wait is not None and provider_wait > 0:
        return provider_wait + random.uniform(0, min(1.0, provider_wait * 0.1))
    return backoff(failures)


@dataclass(frozen=True)
class RetryBudget:
    """Attempts at most, within a window of seconds from the first attempt."""

    attempts: int = 8
    window: float = 600.0

    def allows(self, attempts_made: int, elapsed: float, wait: float) -> bool:
        """True when one more attempt, after ``wait`` seconds, stays within the budget."""
        return attempts_made < self.attempts and elapsed + wait <= self.window
