"""What a task needs to reach a provider, kept per process: the connection's client (a connector
instance and its tokens), and the fleet's coordination objects (budget, breakers, idempotency).

Each is built on first use and forgotten after fork (:mod:`forks`). A connection's client is
reused while the connection read from the store is unchanged (:mod:`tasks.lookup` caches that
read briefly), so an authenticator that caches something (a signed JWT) keeps it across calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from spark_integrations.connectors import Connector, get_connector
from spark_integrations.constants import DEFAULT_IDEMPOTENCY_TTL
from spark_integrations.coordination import (
    BreakerPolicy,
    IdempotencyStore,
    RedisCircuitBreaker,
    RedisRateBudget,
)
from spark_integrations.forks import on_fork
from spark_integrations.tasks.context import coordination_redis
from spark_integrations.tasks.lookup import ConnectionInfo, load_connection
from spark_integrations.tasks.tokens import StoredTokens

__all__ = ["LEARNED", "LearnedRates", "Target", "breaker_for", "coordination", "target_for"]


@dataclass(frozen=True)
class Target:
    """One connection as a request reaches it: what the store holds, its connector, a client
    built from them, and its OAuth tokens (``None`` without OAuth)."""

    info: ConnectionInfo
    connector: type[Connector]
    client: Connector
    tokens: StoredTokens | None


_targets: dict[str, Target] = {}


def target_for(connection_id: str, *, fresh: bool = False) -> Target:
    """The client of a connection, rebuilt only when the connection changed in the store.

    Args:
        fresh: read the connection from the store now, not from this process's brief cache.

    Raises:
        NotFoundError: no such connection; UsageError: its provider is not installed.
    """
    info = load_connection(connection_id, fresh=fresh)
    held = _targets.get(connection_id)
    if held is not None and held.info == info:
        return held
    connector = get_connector(info.provider)
    tokens = None
    if connector.uses_oauth_tokens(info.secrets):
        tokens = StoredTokens(info.id, connector, info.config, info.secrets)
    client = connector(info.config, info.secrets, token_source=tokens, scope=info.id)
    target = _targets[connection_id] = Target(info, connector, client, tokens)
    return target


@cache
def coordination() -> tuple[RedisRateBudget, IdempotencyStore]:
    """This process's rate budget and idempotency records, their scripts loaded."""
    client = coordination_redis()
    budget = RedisRateBudget(client)
    idempotency = IdempotencyStore(client, DEFAULT_IDEMPOTENCY_TTL)
    client.reload_scripts()
    return budget, idempotency


@cache
def breaker_for(fail_max: int, reset_timeout: float) -> RedisCircuitBreaker:
    """This process's circuit breaker for one policy, its scripts loaded."""
    policy = BreakerPolicy(fail_max=fail_max, reset_timeout=reset_timeout)
    client = coordination_redis()
    breaker = RedisCircuitBreaker(client, policy)
    client.reload_scripts()
    return breaker


class LearnedRates:
    """Rates learned from a provider's headers: written to the fleet's budget again at most
    every :attr:`every` seconds while unchanged (each answer carries them)."""

    every = 20.0

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, float]] = {}

    @property
    def ttl(self) -> float:
        """How long the fleet keeps a learned rate that is not learned again."""
        return self.every * 3

    def recently(self, key: str, rate: float) -> bool:
        """True when ``rate`` was written for ``key`` lately; otherwise notes it as written."""
        now = time.monotonic()
        last = self.seen.get(key)
        if last is not None and last[0] == rate and now - last[1] < self.every:
            return True
        self.seen[key] = (rate, now)
        return False


LEARNED = LearnedRates()


@on_fork
def _forget() -> None:
    _targets.clear()
    coordination.cache_clear()
    breaker_for.cache_clear()
    LEARNED.seen.clear()
