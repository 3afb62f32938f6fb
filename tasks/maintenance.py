"""Maintenance tasks of the fleet (queue ``integrations.maintenance``)."""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

from celery import shared_task

from spark_integrations.connectors import get_connector
from spark_integrations.constants import TASK_PING, TASK_PURGE_HISTORY, TASK_REFRESH_TOKENS
from spark_integrations.errors import IntegrationError, UsageError
from spark_integrations.store import Connection
from spark_integrations.store.connections import connection_secrets
from spark_integrations.store.retention import purge_history as purge_store_history
from spark_integrations.store.tokens import renewable_tokens
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.base import FleetTask
from spark_integrations.tasks.context import current_settings, store_session
from spark_integrations.tasks.lookup import secret_box
from spark_integrations.tasks.tokens import StoredTokens

__all__ = ["ping", "purge_history", "refresh_tokens"]

log = logging.getLogger(__name__)

#: How long one run of refresh_tokens goes on; connections left over wait for the next run.
REFRESH_RUN_BUDGET = 120.0
#: How long one run of purge_history goes on (below the task time limit); the rest waits a day.
PURGE_RUN_BUDGET = 180.0


@shared_task(name=TASK_PING, base=FleetTask, bind=True)
def ping(self: FleetTask, echo: str | None = None) -> dict[str, Any]:
    """Answer from a worker: the round trip that proves broker, worker and result backend."""
    if echo is not None and not isinstance(echo, str):
        raise UsageError("echo must be a string.")
    return {
        "ok": True,
        "echo": echo,
        "worker": self.request.hostname,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


@shared_task(name=TASK_REFRESH_TOKENS, base=FleetTask, bind=True)
def refresh_tokens(self: FleetTask) -> dict[str, int]:
    """Renew tokens that expire within their margin or sat unrefreshed too long (CONTRACT.md).

    The margin is at most 60 s and 10% of the token's lifetime. Each refresh takes the same lock
    as on-demand refreshes, so the job and calls never refresh one connection twice. A run stops
    after :data:`REFRESH_RUN_BUDGET` seconds, far inside its time limit, so it is never cut off
    mid-request; the next run goes on.
    """
    with store_session() as session:
        connection_ids = renewable_tokens(session)
    box = secret_box()
    refreshed = failed = 0
    started = time.monotonic()
    for connection_id in connection_ids:
        if time.monotonic() - started > REFRESH_RUN_BUDGET:
            break
        try:
            with store_session() as session:
                conn = session.get(Connection, connection_id)
                if conn is None:
                    continue
                provider, config = conn.provider, dict(conn.config)
                secrets = connection_secrets(box, conn)
            connector = get_connector(provider)
            source = StoredTokens(connection_id, connector, config, secrets)
            if source.refresh_if_due(idle_after=connector.refresh_idle_limit(config)):
                refreshed += 1
        except IntegrationError as exc:  # the store and Redis fail as StoreError, CoordinationError
            failed += 1
            log.warning("refresh of connection %s failed: %s", connection_id, exc)
    return {"refreshed": refreshed, "failed": failed}


@shared_task(name=TASK_PURGE_HISTORY, base=FleetTask, bind=True)
def purge_history(self: FleetTask) -> dict[str, int]:
    """Delete history older than the retention period; returns the rows deleted per table.

    Finished sync runs (the newest of each sync kept), dead letters, processed or failed webhook
    events and finished or expired connect flows older than ``SPARK_INTEGRATIONS_RETENTION_DAYS``
    (30 by default) go, in batches of a short transaction each (see :mod:`store.retention`). Runs
    in progress and events still to process are never touched. Idempotency records need no purge:
    they live in Redis with a TTL (24 hours) and expire by themselves. Run daily by beat.
    """
    days = current_settings().retention_days
    until = time.monotonic() + min(PURGE_RUN_BUDGET, current_settings().task_time_limit * 0.6)
    counts = purge_store_history(store_session, utcnow() - timedelta(days=days), until=until)
    if time.monotonic() >= until:
        log.warning(
            "purge of history older than %d days stopped at its time budget: %s", days, counts
        )
    return counts
