"""Sync definitions in the store, the single source of truth of what runs when.

Created, changed, paused, resumed and removed at run time, from the ``syncs`` commands or from
Python; the scheduler reads them from here on every tick, so a change takes effect without
restarting beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store.models import Connection, SyncCursor, SyncDefinition, SyncRun
from spark_integrations.store.schedules import next_due, validate_schedule
from spark_integrations.store.types import iso_z, utcnow

__all__ = [
    "add_sync",
    "change_sync",
    "claim_due",
    "get_sync",
    "last_successes",
    "list_syncs",
    "recent_runs",
    "remove_sync",
    "reset_cursor",
    "set_enabled",
    "sync_view",
]


def sync_view(sync: SyncDefinition) -> dict[str, Any]:
    """A sync as the ``syncs`` commands show it (CONTRACT.md)."""
    return {
        "id": sync.id,
        "connection_id": sync.connection_id,
        "stream": sync.stream,
        "schedule": sync.schedule,
        "destination": sync.destination,
        "destination_params": dict(sync.destination_params or {}),
        "deliver": sync.deliver,
        "params": dict(sync.params or {}),
        "enabled": sync.enabled,
        "next_run_at": iso_z(sync.next_run_at),
    }


def get_sync(session: Session, sync_id: str) -> SyncDefinition:
    """The sync of that id, or NotFoundError."""
    sync = session.get(SyncDefinition, sync_id) if sync_id else None
    if sync is None:
        raise NotFoundError(f"no sync {sync_id!r}; `syncs list` shows them.")
    return sync


def list_syncs(session: Session) -> Sequence[SyncDefinition]:
    """Every sync, oldest first."""
    return session.scalars(
        select(SyncDefinition).order_by(SyncDefinition.created_at, SyncDefinition.id)
    ).all()


def add_sync(
    session: Session,
    *,
    connection_id: str,
    stream: str,
    schedule: str | None,
    destination: str = "store",
    enabled: bool = True,
    params: dict[str, Any] | None = None,
    destination_params: dict[str, str] | None = None,
    deliver: str = "changes",
    now: datetime | None = None,
) -> SyncDefinition:
    """Define a sync; its first scheduled run is one period from now.

    The caller checks the stream and its ``params`` against the connector
    (``Stream.validate_params``) and the destination with its ``destination_params``
    (``--with`` templates) and ``deliver`` mode (``--deliver changes|new``) against the
    destinations (this package imports neither).
    """
    if session.get(Connection, connection_id) is None:
        raise NotFoundError(f"no connection {connection_id!r}; `connections list` shows them.")
    schedule = validate_schedule(schedule)
    now = now or utcnow()
    sync = SyncDefinition(
        connection_id=connection_id,
        stream=stream,
        schedule=schedule,
        destination=destination,
        enabled=enabled,
        params=dict(params or {}),
        destination_params=dict(destination_params or {}),
        deliver=deliver,
        next_run_at=None if schedule is None else next_due(schedule, now, now=now),
    )
    session.add(sync)
    session.flush()
    return sync


def change_sync(
    session: Session,
    sync_id: str,
    *,
    schedule: str | None = None,
    destination: str | None = None,
    destination_params: dict[str, str] | None = None,
    deliver: str | None = None,
    unscheduled: bool = False,
) -> SyncDefinition:
    """Change a sync's schedule (due one period from now) or destination (with its params and
    delivery mode: a new destination without them has none, and delivers changes)."""
    sync = get_sync(session, sync_id)
    if unscheduled:
        sync.schedule = None
        sync.next_run_at = None
    elif schedule is not None:
        sync.schedule = validate_schedule(schedule)
        now = utcnow()
        sync.next_run_at = next_due(sync.schedule, now, now=now) if sync.schedule else None
    if destination is not None:
        sync.destination = destination
        sync.destination_params = dict(destination_params or {})
        sync.deliver = deliver or "changes"
    else:
        if destination_params is not None:
            sync.destination_params = dict(destination_params)
        if deliver is not None:
            sync.deliver = deliver
    session.flush()
    return sync


def set_enabled(session: Session, sync_id: str, enabled: bool) -> SyncDefinition:
    """Pause or resume a sync. A resumed sync is next due one period from now."""
    sync = get_sync(session, sync_id)
    if sync.enabled != enabled:
        sync.enabled = enabled
        if enabled and sync.schedule:
            now = utcnow()
            sync.next_run_at = next_due(sync.schedule, now, now=now)
    session.flush()
    return sync


def remove_sync(session: Session, sync_id: str) -> None:
    """Remove a sync with its cursor, runs and records."""
    sync = get_sync(session, sync_id)
    session.delete(sync)
    session.flush()


def reset_cursor(session: Session, sync_id: str) -> None:
    """Move a sync's cursor back to the start: its next run reads the whole stream.

    Refused while a run is in progress: its next page would set the cursor again.
    """
    sync = session.get(SyncDefinition, sync_id, with_for_update=True, populate_existing=True)
    if sync is None:
        raise NotFoundError(f"no sync {sync_id!r}; `syncs list` shows them.")
    busy = sync.active_run_id or sync.backfill_run_id
    if busy:
        raise UsageError(
            f"run {busy} of sync {sync_id} is in progress; reset the cursor once it has ended "
            "(or pause the sync and wait for it)."
        )
    session.execute(delete(SyncCursor).where(SyncCursor.sync_id == sync_id))
    session.flush()


def recent_runs(session: Session, sync_id: str, limit: int = 20) -> Sequence[SyncRun]:
    """A sync's runs, newest first."""
    return session.scalars(
        select(SyncRun)
        .where(SyncRun.sync_id == sync_id)
        .order_by(SyncRun.created_at.desc(), SyncRun.id)
        .limit(limit)
    ).all()


def claim_due(session: Session, now: datetime | None = None, limit: int = 100) -> list[str]:
    """Claim the syncs due now, each for one period, and return their ids.

    Each claim is a compare-and-set on the due time the caller read: of two schedulers reading
    the same due time only one moves it on, so a period is never claimed twice. The caller
    commits, then sends the runs.
    """
    now = now or utcnow()
    due = session.execute(
        select(SyncDefinition.id, SyncDefinition.schedule, SyncDefinition.next_run_at)
        .where(
            SyncDefinition.enabled.is_(True),
            SyncDefinition.schedule.is_not(None),
            SyncDefinition.next_run_at <= now,
        )
        .order_by(SyncDefinition.next_run_at)
        .limit(limit)
    ).all()
    claimed: list[str] = []
    for sync_id, schedule, seen in due:
        if schedule is None or seen is None:  # filtered out above; for the type checker
            continue
        try:
            following = next_due(schedule, seen, now=now)
        except UsageError:  # a schedule broken by hand in the database: leave that sync alone
            continue
        result = session.execute(
            update(SyncDefinition)
            .where(SyncDefinition.id == sync_id, SyncDefinition.next_run_at == seen)
            .where(SyncDefinition.enabled.is_(True))
            .values(next_run_at=following, last_scheduled_at=seen)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            claimed.append(sync_id)
    return claimed


def last_successes(session: Session) -> list[tuple[str, str, str, datetime]]:
    """Each enabled sync's id, connector and stream, and when its latest successful run ended
    (when the sync was added, if none has succeeded yet): what its lag runs from.

    One statement; each sync's latest run is found through its (sync_id, created_at) index,
    walking back from the newest run to the first one that succeeded.
    """
    latest = (
        select(SyncRun.finished_at)
        .where(SyncRun.sync_id == SyncDefinition.id, SyncRun.status == "succeeded")
        .order_by(SyncRun.created_at.desc())
        .limit(1)
        .correlate(SyncDefinition)
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            SyncDefinition.id,
            Connection.provider,
            SyncDefinition.stream,
            latest,
            SyncDefinition.created_at,
        )
        .join(Connection, Connection.id == SyncDefinition.connection_id)
        .where(SyncDefinition.enabled.is_(True))
    ).all()
    return [(sid, provider, stream, ended or added) for sid, provider, stream, ended, added in rows]
