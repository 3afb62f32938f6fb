"""Per-process resources of task code: settings, the coordination Redis and the store.

Each is built on first use in the process that uses it, and forgotten after fork (:mod:`forks`),
so a prefork pool child never shares a socket with its parent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from spark_integrations.coordination.client import CoordinationRedis, connect
from spark_integrations.forks import on_fork
from spark_integrations.settings_current import current_settings
from spark_integrations.store import session_scope

__all__ = ["coordination_redis", "current_settings", "store_session"]

_redis: CoordinationRedis | None = None


def coordination_redis() -> CoordinationRedis:
    """This process's client of the coordination Redis (rate budgets, locks, counters); its
    failures are :class:`errors.CoordinationError` (:mod:`coordination.client`)."""
    global _redis
    client = _redis
    if client is None:
        client = _redis = connect(
            current_settings().redis_url,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
            decode_responses=True,
        )
    return client


@on_fork
def _forget_redis() -> None:
    global _redis
    _redis = None


@contextmanager
def store_session() -> Iterator[Session]:
    """A store session in one transaction."""
    with session_scope(current_settings().database_url) as session:
        yield session
