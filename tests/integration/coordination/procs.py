"""Process bodies for the cross-process tests (importable by ``spawn`` children, no pytest)."""

from __future__ import annotations

import time
from typing import Any

import redis

from spark_integrations.coordination import (
    BreakerPolicy,
    Bucket,
    RedisCircuitBreaker,
    RedisRateBudget,
)


def server_time(client: redis.Redis) -> float:
    """Redis's clock, in seconds."""
    seconds, micros = client.time()
    return int(seconds) + int(micros) / 1_000_000


def send_loop(
    url: str, rate: float, burst: float, sends_wanted: int, barrier: Any
) -> tuple[list[float], int]:
    """Wait at the barrier with the others, then ask-then-"send" until ``sends_wanted`` sends, as
    a deferred task would; the Redis time of every send, and how many asks were refused.

    Refused with a planned slot: sleep until it and ask again. Refused beyond the horizon
    (nothing planned): sleep a while, at most half a second, and ask again.
    """
    client = redis.Redis.from_url(url)
    try:
        budget = RedisRateBudget(client)
        buckets = [Bucket("shared", rate, burst)]
        sends: list[float] = []
        refused = 0
        client.ping()  # connect before the race
        barrier.wait(timeout=60)
        while len(sends) < sends_wanted:
            grant = budget.acquire(buckets)
            if grant.allowed:
                sends.append(server_time(client))
                continue
            refused += 1
            time.sleep(grant.wait if grant.reserved else min(grant.wait, 0.5))
        return sends, refused
    finally:
        client.close()


def race_admit(
    url: str, policy: BreakerPolicy, key: str, token: str, barrier: Any, results: Any
) -> None:
    """Wait at the barrier with the others, then ask for admission once; report it."""
    client = redis.Redis.from_url(url)
    try:
        breaker = RedisCircuitBreaker(client, policy)
        client.ping()  # connect before the race
        barrier.wait(timeout=30)
        admission = breaker.admit([key], token)
        results.put((token, admission.allowed, admission.probe, admission.state, admission.wait))
    finally:
        client.close()
