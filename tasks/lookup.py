"""Connections as task code needs them: provider, config, decrypted secrets, status.

Read from the store and cached in the worker process for a couple of seconds
(``CONNECTION_CACHE_SECONDS``), so a burst of calls on one connection costs one store read
rather than one each; a change made with ``connections update`` reaches workers within that time,
and at once for a call that meets a 401 (it reads the connection again before giving up).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from spark_integrations.connectors.registry import get_connector
from spark_integrations.connectors.urlpolicy import url_problem
from spark_integrations.constants import CONNECTION_CACHE_SECONDS, CONNECTION_URL_KEYS
from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.forks import on_fork
from spark_integrations.store import Connection, SecretBox
from spark_integrations.store.connections import connection_secrets
from spark_integrations.tasks.context import current_settings, store_session

__all__ = ["ConnectionInfo", "load_connection", "secret_box"]


@dataclass(frozen=True)
class ConnectionInfo:
    """One connection, its secrets decrypted (never logged: the repr leaves them out)."""

    id: str
    provider: str
    config: dict[str, Any]
    status: str
    status_reason: str | None
    secrets: dict[str, str] = field(repr=False)


_cache: dict[str, tuple[float, ConnectionInfo]] = {}


@cache
def secret_box() -> SecretBox:
    """This process's encrypter of secrets, built once."""
    return SecretBox(current_settings().secret_keys)


@on_fork
def _forget() -> None:
    _cache.clear()
    secret_box.cache_clear()


def load_connection(connection_id: str, *, fresh: bool = False) -> ConnectionInfo:
    """The connection with this id (cached briefly unless ``fresh``), or
    :class:`NotFoundError`."""
    now = time.monotonic()
    hit = _cache.get(connection_id)
    if hit is not None and not fresh and now - hit[0] < CONNECTION_CACHE_SECONDS:
        return hit[1]
    with store_session() as session:
        conn = session.get(Connection, connection_id)
        if conn is None:
            raise NotFoundError(f"no connection has the id {connection_id!r}.")
        info = ConnectionInfo(
            id=conn.id,
            provider=conn.provider,
            config=dict(conn.config),
            status=conn.status,
            status_reason=conn.status_reason,
            secrets=connection_secrets(secret_box(), conn),
        )
    _check_urls(info)
    _cache[connection_id] = (now, info)
    return info


def _check_urls(info: ConnectionInfo) -> None:
    """Hold a stored connection to the outbound URL policy as it stands now (it may have been
    stored before the policy, or before the operator narrowed the hosts allowed over http)."""
    hosts = current_settings().allow_http_hosts
    keys: tuple[str, ...] = CONNECTION_URL_KEYS
    # With the URLs its connector declares; a connector not installed here is target_for's to
    # report, in its own sentence.
    with contextlib.suppress(UsageError):
        keys = get_connector(info.provider).url_keys()
    for key in keys:
        value = info.config.get(key)
        if value is None:
            continue
        problem = url_problem(value, http_hosts=hosts, query=key != "base_url")
        if problem is not None:
            raise UsageError(
                f"connection {info.id}'s config {key} {problem}; change it with "
                "`connections update`."
            )
