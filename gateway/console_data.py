"""What the operator's console shows, read from the store and the coordination Redis.

One :class:`console_views.Snapshot` per page: connections with their health (status, the reason when
``needs_reauth``, the last success the store can tell of, the OAuth token's refresh state, rate
budgets and circuit breakers), syncs with their lag and last runs, dead letters, and recent
webhooks. Only what an operator may see is copied out of the rows: no config, no credentials, no
token, no task kwargs, no webhook payload (nor a processing error, which may quote one).

The store is read in one transaction; when it fails, the page fails (503). The coordination
Redis is read with the functions the fleet's own budget and breaker use to decide
(:meth:`RedisRateBudget.state`, :meth:`RedisCircuitBreaker.state`); when it does not answer,
each of those reads is ``None`` and the page says "unknown".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spark_integrations.connectors import get_connector
from spark_integrations.coordination import (
    Bucket,
    IdempotencyStore,
    RedisCircuitBreaker,
    RedisRateBudget,
)
from spark_integrations.coordination.client import CoordinationRedis, connect
from spark_integrations.errors import CoordinationError, IntegrationError
from spark_integrations.gateway.console_views import (
    LIMITS,
    ConnectionHealth,
    Letter,
    Limit,
    Limits,
    Run,
    Snapshot,
    SyncHealth,
    TokenState,
    Webhook,
)
from spark_integrations.redaction import hide_urls
from spark_integrations.settings import Settings
from spark_integrations.store import (
    Connection,
    DeadLetter,
    OAuthToken,
    SyncDefinition,
    SyncRun,
    WebhookEvent,
)
from spark_integrations.store.types import utcnow

__all__ = ["ConsoleReader", "CoordinationTools"]

log = logging.getLogger("gateway")

SessionFactory = Callable[[], AbstractContextManager[Session]]
#: Seconds the console waits for the coordination Redis before it says "unknown".
REDIS_TIMEOUT = 1.0


@dataclass(frozen=True)
class CoordinationTools:
    """The coordination Redis and the fleet's objects over it, built once per gateway (each
    registers its scripts on the client)."""

    client: CoordinationRedis
    budget: RedisRateBudget
    breaker: RedisCircuitBreaker
    idempotency: IdempotencyStore

    @classmethod
    def over(cls, client: CoordinationRedis) -> CoordinationTools:
        """The tools over ``client``."""
        return cls(
            client, RedisRateBudget(client), RedisCircuitBreaker(client), IdempotencyStore(client)
        )


class _Coordination:
    """Reads of the coordination Redis for one page; after the first failure, none is tried."""

    def __init__(self, tools: CoordinationTools | None) -> None:
        self.tools = tools
        self.ok = tools is not None
        self.breakers_seen: dict[str, dict[str, Any] | None] = {}

    def read(self, what: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        if not self.ok:
            return None
        try:
            return what()
        except (CoordinationError, redis.RedisError, OSError, ValueError) as exc:
            log.warning("console: the coordination Redis did not answer (%s)", hide_urls(str(exc)))
            self.ok = False
            return None

    def budget_state(self, bucket: Bucket) -> dict[str, Any] | None:
        return self.read(lambda: self.tools.budget.state(bucket))  # type: ignore[union-attr]

    def breaker_state(self, key: str) -> dict[str, Any] | None:
        if key not in self.breakers_seen:  # a connector's key is shared by its connections
            self.breakers_seen[key] = self.read(
                lambda: self.tools.breaker.state(key)  # type: ignore[union-attr]
            )
        return self.breakers_seen[key]


def _limits(conn: Connection, coordination: _Coordination) -> dict[str, Any]:
    """The budgets and breakers a call on ``conn`` goes through, as the fleet keys them
    (:meth:`Connector.budgets`, :attr:`GuardedRequest.breaker_keys`)."""
    try:
        connector = get_connector(conn.provider)
        policy = connector.policy(dict(conn.config or {}))
    except (IntegrationError, ValueError, TypeError) as exc:
        return {"limits_problem": str(exc)}
    name = connector.name
    own = Bucket(f"{name}:{conn.id}", policy.rate_limit, policy.rate_limit_burst)
    buckets = [own]
    if policy.fleet_rate_limit:
        buckets.append(Bucket(name, policy.fleet_rate_limit, policy.rate_limit_burst))
    return {
        "budgets": tuple(Limit(b.key, b.rate, coordination.budget_state(b)) for b in buckets),
        "breakers": tuple(
            Limit(key, float(policy.breaker_fail_max), coordination.breaker_state(key))
            for key in (f"{name}:{conn.id}", name)
        ),
    }


def _last_successes(session: Session) -> dict[str, tuple[datetime, str]]:
    """The newest success the store knows of, per connection: a sync run that succeeded, a
    token obtained (a connect or a refresh), a webhook processed. Calls leave no row behind
    when they succeed, so they are not among them (the fleet's metrics count them)."""
    found: dict[str, tuple[datetime, str]] = {}

    def keep(rows: Sequence[Any], source: str) -> None:
        for connection_id, when in rows:
            if when is not None and (connection_id not in found or when > found[connection_id][0]):
                found[connection_id] = (when, source)

    keep(
        session.execute(
            select(SyncDefinition.connection_id, func.max(SyncRun.finished_at))
            .join(SyncRun, SyncRun.sync_id == SyncDefinition.id)
            .where(SyncRun.status == "succeeded")
            .group_by(SyncDefinition.connection_id)
        ).all(),
        "sync run",
    )
    keep(session.execute(select(OAuthToken.connection_id, OAuthToken.obtained_at)).all(), "token")
    keep(
        session.execute(
            select(WebhookEvent.connection_id, func.max(WebhookEvent.processed_at))
            .where(WebhookEvent.status == "processed")
            .group_by(WebhookEvent.connection_id)
        ).all(),
        "webhook",
    )
    return found


def _token_state(token: OAuthToken | None) -> TokenState | None:
    if token is None:
        return None
    return TokenState(
        grant_type=token.grant_type,
        expires_at=token.expires_at,
        obtained_at=token.obtained_at,
        version=token.version,
        renewable=token.refresh_token is not None or token.grant_type == "client_credentials",
        refresh_pending_since=token.refresh_pending_since,
        refresh_pending_by=token.refresh_pending_by,
    )


def _connections(
    session: Session, coordination: _Coordination, limit: int
) -> tuple[list[ConnectionHealth], dict[str, str]]:
    rows = session.execute(
        select(Connection, OAuthToken)
        .outerjoin(OAuthToken, OAuthToken.connection_id == Connection.id)
        .order_by(Connection.name)
        .limit(limit)
    ).all()
    successes = _last_successes(session)
    found = []
    for conn, token in rows:
        when, source = successes.get(conn.id, (None, None))
        found.append(
            ConnectionHealth(
                id=conn.id,
                name=conn.name,
                provider=conn.provider,
                status=conn.status,
                reason=conn.status_reason,
                last_success=when,
                last_success_source=source,
                token=_token_state(token),
                **_limits(conn, coordination),
            )
        )
    names: dict[str, str] = {
        row[0]: row[1] for row in session.execute(select(Connection.id, Connection.name))
    }
    return found, names


def _syncs(session: Session, names: dict[str, str], limits: Limits) -> list[SyncHealth]:
    syncs = session.scalars(
        select(SyncDefinition)
        .order_by(SyncDefinition.created_at, SyncDefinition.id)
        .limit(limits.syncs)
    ).all()
    succeeded: dict[str, datetime | None] = {
        row[0]: row[1]
        for row in session.execute(
            select(SyncRun.sync_id, func.max(SyncRun.finished_at))
            .where(SyncRun.status == "succeeded")
            .group_by(SyncRun.sync_id)
        )
    }
    rank = (
        func.row_number()
        .over(
            partition_by=SyncRun.sync_id,
            order_by=(SyncRun.created_at.desc(), SyncRun.id),
        )
        .label("rank")
    )
    ranked = select(SyncRun.id, rank).subquery()
    recent = session.scalars(
        select(SyncRun)
        .join(ranked, ranked.c.id == SyncRun.id)
        .where(ranked.c.rank <= limits.runs_per_sync)
        .order_by(SyncRun.created_at.desc(), SyncRun.id)
    ).all()
    runs: dict[str, list[Run]] = {}
    for run in recent:
        runs.setdefault(run.sync_id, []).append(
            Run(
                id=run.id,
                status=run.status,
                full_refresh=run.full_refresh,
                records=run.records,
                pages=run.pages,
                started_at=run.started_at,
                finished_at=run.finished_at,
                error=run.error,
            )
        )
    return [
        SyncHealth(
            id=s.id,
            connection_id=s.connection_id,
            connection_name=names.get(s.connection_id, s.connection_id),
            stream=s.stream,
            schedule=s.schedule,
            destination=s.destination,
            enabled=s.enabled,
            next_run_at=s.next_run_at,
            last_success=succeeded.get(s.id),
            runs=tuple(runs.get(s.id, ())),
        )
        for s in syncs
    ]


def _letters(session: Session, limit: int) -> tuple[list[Letter], int]:
    rows = session.scalars(
        select(DeadLetter).order_by(DeadLetter.created_at.desc(), DeadLetter.id).limit(limit)
    ).all()
    total = session.scalar(select(func.count()).select_from(DeadLetter)) or 0
    letters = [
        Letter(
            id=d.id,
            task=d.task,
            connection_id=d.connection_id,
            action=d.action,
            error=d.error,
            attempts=d.attempts,
            created_at=d.created_at,
            replayed_at=d.replayed_at,
        )
        for d in rows
    ]
    return letters, int(total)


def _webhooks(session: Session, limit: int) -> list[Webhook]:
    rows = session.execute(
        select(
            WebhookEvent.id,
            WebhookEvent.provider,
            WebhookEvent.connection_id,
            WebhookEvent.delivery_id,
            WebhookEvent.event_type,
            WebhookEvent.status,
            WebhookEvent.attempts,
            WebhookEvent.received_at,
            WebhookEvent.processed_at,
        )  # the payload and the result are never loaded
        .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id)
        .limit(limit)
    ).all()
    return [Webhook(*row) for row in rows]


class ConsoleReader:
    """Reads one :class:`Snapshot` from the store and the coordination Redis."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        limits: Limits = LIMITS,
        redis_client: Callable[[], CoordinationRedis] | None = None,
    ) -> None:
        """Bind the reader to the fleet's store and coordination Redis (``redis_client``
        builds the client; default: one over ``settings.redis_url`` with short timeouts)."""
        self.settings = settings
        self.sessions = sessions
        self.limits = limits
        self._make_client = redis_client or self._default_client
        self._tools: CoordinationTools | None = None
        self._lock = threading.Lock()

    def _default_client(self) -> CoordinationRedis:
        return connect(
            self.settings.redis_url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            decode_responses=True,
        )

    def coordination(self) -> CoordinationTools | None:
        """The coordination Redis's tools (built once), or None if no client can be built."""
        with self._lock:  # endpoints run in a thread pool
            if self._tools is None:
                try:
                    self._tools = CoordinationTools.over(self._make_client())
                except (redis.RedisError, ValueError, OSError) as exc:
                    log.warning(
                        "console: no client of the coordination Redis (%s)", type(exc).__name__
                    )
                    return None
            return self._tools

    def snapshot(self) -> Snapshot:
        """The console's page, read now.

        Raises:
            StoreError: the store cannot be read.
        """
        limits = self.limits
        coordination = _Coordination(self.coordination())
        with self.sessions() as session:
            now = utcnow()
            connections, names = _connections(session, coordination, limits.connections)
            syncs = _syncs(session, names, limits)
            letters, letters_total = _letters(session, limits.dead_letters)
            webhooks = _webhooks(session, limits.webhooks)
            truncated = []
            if len(names) > len(connections):
                truncated.append(f"connections: the first {len(connections)} of {len(names)}")
            if len(syncs) >= limits.syncs:
                truncated.append(f"syncs: the first {limits.syncs}")
        return Snapshot(
            now=now,
            mode=self.settings.mode,
            connections=tuple(connections),
            syncs=tuple(syncs),
            letters=tuple(letters),
            letters_total=letters_total,
            webhooks=tuple(webhooks),
            coordination_ok=coordination.ok,
            truncated=tuple(truncated),
        )
