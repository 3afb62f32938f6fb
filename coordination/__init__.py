"""Fleet-wide coordination in Redis: rate budgets and circuit breakers shared by every worker.

Every worker process on every host shares one Redis. Before a call to a provider, a task asks
:class:`RedisRateBudget` for a slot (GCRA over the connector's and the connection's budgets at
once, with reservations of near-future slots) and :class:`RedisCircuitBreaker` for admission
(one state per key, a single half-open probe for the whole fleet). Each operation is one Lua
script, atomic, timed by Redis ``TIME`` so the hosts' differing clocks do not matter.
"""

from __future__ import annotations

from spark_integrations.coordination.breaker import Admission, BreakerPolicy, RedisCircuitBreaker
from spark_integrations.coordination.budget import Bucket, Grant, RedisRateBudget
from spark_integrations.coordination.scripts import load_scripts, queue_script

__all__ = [
    "Admission",
    "BreakerPolicy",
    "Bucket",
    "Grant",
    "RedisCircuitBreaker",
    "RedisRateBudget",
    "load_scripts",
    "queue_script",
]
