"""Fleet-wide coordination in Redis: rate budgets, circuit breakers and idempotency records.

Every worker process on every host shares one Redis. Before a call to a provider, a task asks
:class:`RedisRateBudget` for a slot (GCRA over the connector's and the connection's budgets at
once, with reservations of near-future slots) and :class:`RedisCircuitBreaker` for admission
(one state per key, a single half-open probe for the whole fleet); a call with an idempotency
key claims its record in :class:`IdempotencyStore` first. Each operation is one Lua script,
atomic, timed by Redis ``TIME`` so the hosts' differing clocks do not matter.
"""

from __future__ import annotations

from spark_integrations.coordination.breaker import Admission, BreakerPolicy, RedisCircuitBreaker
from spark_integrations.coordination.budget import Bucket, Grant, RedisRateBudget
from spark_integrations.coordination.idempotency import Claim, IdempotencyStore, params_fingerprint
from spark_integrations.coordination.scripts import load_scripts, queue_script

__all__ = [
    "Admission",
    "BreakerPolicy",
    "Bucket",
    "Claim",
    "Grant",
    "IdempotencyStore",
    "RedisCircuitBreaker",
    "RedisRateBudget",
    "load_scripts",
    "params_fingerprint",
    "queue_script",
]
