"""Per-process resources of task code: settings, the coordination Redis and the store.

Each is built on first use in the process that uses it, so a prefork pool child never shares a
socket with its parent (clients are keyed by process id).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import redis
from sqlalchemy.orm import Session

import spark_integrations.settings as settings_module
from spark_integrations.settings import Settings
from spark_integrations.store import session_scope

__all__ = ["coordination_redis", "current_settings", "store_session"]

_redis_clients: dict[int, redis.Redis] = {}


@cache
def current_settings() -> Settings:
    """The fleet's settings, read once per process."""
    return settings_module.load()


def coordination_redis() -> redis.Redis:
    """This process's client of the coordination Redis (rate budgets, locks, counters)."""
    pid = os.getpid()
    client = _redis_clients.get(pid)
    if client is None:
        client = redis.Redis.from_url(
            current_settings().redis_url,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
            decode_responses=True,
        )
        _redis_clients.clear()  # drop any client inherited from a parent process
        _redis_clients[pid] = client
    return client


@contextmanager
def store_session() -> Iterator[Session]:
    """A store session in one transaction."""
    with session_scope(current_settings().database_url) as session:
        yield session
