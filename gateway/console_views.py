"""What the operator's console shows: plain, frozen views of the store's rows.

Each view copies out only what an operator may see (:mod:`gateway.console_data` reads them):
no config, no credentials, no token, no task kwargs, no webhook payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "LIMITS",
    "ConnectionHealth",
    "Letter",
    "Limit",
    "Limits",
    "Run",
    "Snapshot",
    "SyncHealth",
    "TokenState",
    "Webhook",
]


@dataclass(frozen=True)
class Limits:
    """How much one page shows of each list (newest first where it says so)."""

    connections: int = 500
    syncs: int = 500
    runs_per_sync: int = 3
    dead_letters: int = 100
    webhooks: int = 50


LIMITS = Limits()


@dataclass(frozen=True)
class TokenState:
    """An OAuth token's refresh state, without the token."""

    grant_type: str
    expires_at: datetime | None
    obtained_at: datetime
    version: int
    renewable: bool
    refresh_pending_since: datetime | None
    refresh_pending_by: str | None


@dataclass(frozen=True)
class Limit:
    """A rate budget or a circuit breaker of a connection; ``state`` None when Redis is down."""

    key: str
    configured: float
    state: dict[str, Any] | None


@dataclass(frozen=True)
class ConnectionHealth:
    """One connection as the console shows it."""

    id: str
    name: str
    provider: str
    status: str
    reason: str | None
    last_success: datetime | None
    last_success_source: str | None
    token: TokenState | None
    budgets: tuple[Limit, ...] = ()
    breakers: tuple[Limit, ...] = ()
    #: Why budgets and breakers cannot be shown (connector not installed), if they cannot.
    limits_problem: str | None = None


@dataclass(frozen=True)
class Run:
    """One run of a sync."""

    id: str
    status: str
    full_refresh: bool
    records: int
    pages: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class SyncHealth:
    """One sync: where it pulls from, how far behind it is, and its last runs."""

    id: str
    connection_id: str
    connection_name: str
    stream: str
    schedule: str | None
    destination: str
    enabled: bool
    next_run_at: datetime | None
    last_success: datetime | None
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class Letter:
    """A dead letter, without its kwargs."""

    id: str
    task: str
    connection_id: str | None
    action: str | None
    error: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None


@dataclass(frozen=True)
class Webhook:
    """A received webhook event, without its payload."""

    id: str
    provider: str
    connection_id: str
    delivery_id: str
    event_type: str | None
    status: str
    attempts: int
    received_at: datetime
    processed_at: datetime | None


@dataclass(frozen=True)
class Snapshot:
    """Everything one page of the console shows, read at ``now``."""

    now: datetime
    mode: str
    connections: tuple[ConnectionHealth, ...]
    syncs: tuple[SyncHealth, ...]
    letters: tuple[Letter, ...]
    letters_total: int
    webhooks: tuple[Webhook, ...]
    #: False when the coordination Redis did not answer (budgets and breakers unknown).
    coordination_ok: bool = True
    truncated: tuple[str, ...] = field(default=())
