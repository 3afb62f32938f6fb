"""What the fleet's breakers and budgets hold right now, read for operators (metrics, console).

Read-only and cheap: one ``SCAN`` over the breaker's or the budget's prefix, then one pipeline
of reads with Redis ``TIME`` (the clock the scripts keep their times by). The key layout is the
one :mod:`coordination.breaker` and :mod:`coordination.budget` write; a key of another shape
under the prefix is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from spark_integrations.constants import (
    BREAKER_STATE_KEY,
    BUDGET_LEARNED_KEY,
    BUDGET_PLAN_KEY,
    BUDGET_TAT_KEY,
    REDIS_BREAKER_PREFIX,
    REDIS_BUDGET_PREFIX,
)

__all__ = ["BreakerView", "BudgetView", "breaker_views", "budget_views"]

_US = 1_000_000
#: Keys asked per SCAN step.
SCAN_COUNT = 1000


@dataclass(frozen=True)
class BreakerView:
    """One breaker key with state: ``closed`` (with failures counted), ``open`` or
    ``half_open`` (open, its time passed: the next caller probes)."""

    key: str
    state: str
    failures: int
    open_for: float  # seconds until a probe may go (0 unless open)


@dataclass(frozen=True)
class BudgetView:
    """One budget bucket with state.

    Attributes:
        bucket: Its key, as in :class:`coordination.budget.Bucket`.
        backlog: Seconds ahead its slots are taken (emission or planning schedule, the later).
        learned_rate: A rate the provider's headers set (requests per second), or None.
        paused_for: Seconds the provider's pause still holds it (0 when none).
    """

    bucket: str
    backlog: float
    learned_rate: float | None
    paused_for: float


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(_text(value))
    except ValueError:
        return None


def _scan(client: Any, prefix: str) -> Iterator[str]:
    for key in client.scan_iter(match=prefix + "*", count=SCAN_COUNT):
        yield _text(key)


def _now_us(reply: Any) -> int:
    seconds, micros = reply
    return int(seconds) * _US + int(micros)


def breaker_views(client: Any, prefix: str = REDIS_BREAKER_PREFIX) -> list[BreakerView]:
    """Every breaker key that has state (failures counted, or open), sorted by key."""
    head = prefix + BREAKER_STATE_KEY.format(key="")
    keys = sorted(k for k in _scan(client, head) if len(k) > len(head))
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for key in keys:
        pipe.hmget(key, "state", "open_until", "failures")
    now, *rows = pipe.execute(raise_on_error=False)
    now_us = _now_us(now)
    views = []
    for key, row in zip(keys, rows, strict=True):
        if isinstance(row, Exception):
            continue  # a key of another type under the prefix: no breaker's
        state, open_until, failures = row
        if state is None and failures is None:
            continue  # expired between the scan and the read
        until = _number(open_until) or 0.0
        is_open = state is not None and _text(state) == "open"
        left = max(0.0, (until - now_us) / _US) if is_open else 0.0
        views.append(
            BreakerView(
                key=key[len(head) :],
                state=("open" if left > 0 else "half_open") if is_open else "closed",
                failures=int(_number(failures) or 0),
                open_for=left,
            )
        )
    return views


def budget_views(client: Any, prefix: str = REDIS_BUDGET_PREFIX) -> list[BudgetView]:
    """Every budget bucket with state (a schedule ahead of now, or something learned), sorted."""
    kinds = {
        "tat": prefix + BUDGET_TAT_KEY.format(bucket=""),
        "plan": prefix + BUDGET_PLAN_KEY.format(bucket=""),
        "learned": prefix + BUDGET_LEARNED_KEY.format(bucket=""),
    }
    found: dict[str, dict[str, str]] = {}
    for key in _scan(client, prefix):
        for kind, head in kinds.items():
            if key.startswith(head) and len(key) > len(head):
                found.setdefault(key[len(head) :], {})[kind] = key
                break
    buckets = sorted(found)
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for bucket in buckets:
        keys = found[bucket]
        pipe.get(keys.get("tat", kinds["tat"] + bucket))
        pipe.get(keys.get("plan", kinds["plan"] + bucket))
        pipe.hmget(keys.get("learned", kinds["learned"] + bucket), "rate", "pause_until")
    now, *replies = pipe.execute(raise_on_error=False)
    now_us = _now_us(now)
    views = []
    for i, bucket in enumerate(buckets):
        read = replies[3 * i : 3 * i + 3]
        if any(isinstance(reply, Exception) for reply in read):
            continue  # a key of another type under the prefix: no budget's
        tat, plan, (rate, pause_until) = read
        ahead = max(_number(tat) or 0.0, _number(plan) or 0.0)
        learned = _number(rate)
        views.append(
            BudgetView(
                bucket=bucket,
                backlog=max(0.0, (ahead - now_us) / _US),
                learned_rate=learned if learned is not None and learned > 0 else None,
                paused_for=max(0.0, ((_number(pause_until) or 0.0) - now_us) / _US),
            )
        )
    return views
