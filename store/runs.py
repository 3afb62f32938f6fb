"""Sync runs in the store: one at a time per sync, held by a lease, resumable at any page.

A run is *held* by one execution at a time (``holder``), which proves itself alive with
``heartbeat_at``. Every page is committed fenced on the holder, in the same transaction as the
records and the cursor, so an execution that lost its lease (stalled past it, or its worker
was taken for dead) can write nothing more. An execution that ends its share of a run releases
the lease as it commits its last page, and the continuation claims it; a lease left behind by
a killed worker goes stale after :data:`LEASE_SECONDS` and may then be taken over.

At most one incremental run and one backfill (full refresh) of a sync are in progress at a
time: the sync's ``active_run_id`` and ``backfill_run_id`` are claimed under a row lock of the
sync (``SELECT ... FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` serialises writers anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from spark_integrations.errors import NotFoundError
from spark_integrations.store.driver import Driver
from spark_integrations.store.models import SyncCursor, SyncDefinition, SyncRun, SyncRunPosition
from spark_integrations.store.run_pages import (
    Committed,
    commit_page,
    follow_position,
    later,
    move_cursor,
    position_digest,
)
from spark_integrations.store.types import iso_z, utcnow

__all__ = [
    "LEASE_SECONDS",
    "Committed",
    "RunState",
    "Started",
    "begin_run",
    "claim_run",
    "commit_page",
    "fail_run",
    "finish_run",
    "follow_position",
    "get_run",
    "hand_off_run",
    "later",
    "position_digest",
    "run_view",
    "stale_runs",
    "touch_run",
]

#: A run whose holder has not proved alive for this long may be taken over (the fleet passes
#: its setting ``sync_lease``; this is the default).
LEASE_SECONDS = 60.0
ACTIVE = ("queued", "running")


@dataclass
class RunState:
    """What an execution needs to go on with a run it holds."""

    run_id: str
    sync_id: str
    full_refresh: bool
    task_id: str | None
    holder: str
    since: Any
    position: Any
    cursor: Any
    pages: int
    records: int
    retries: int
    deferred: int
    #: Takeovers since the run's last committed page.
    stalls: int = 0
    #: Newest-first and delta runs: the cursor the sync takes when the run finishes.
    pending_cursor: Any = None


@dataclass(frozen=True)
class Started:
    """How :func:`begin_run` went.

    ``kind`` is ``started`` (a new run), ``resumed`` (a run left behind, now held by the
    caller), ``busy`` (another run is in progress), ``mine`` (a redelivery of a run's own
    message while another part of it holds it) or ``finished`` (the run this message started
    has ended: its result stands).
    """

    kind: Literal["started", "resumed", "busy", "mine", "finished"]
    run: SyncRun
    state: RunState | None = None


def _state(run: SyncRun, holder: str) -> RunState:
    return RunState(
        run_id=run.id,
        sync_id=run.sync_id,
        full_refresh=run.full_refresh,
        task_id=run.task_id,
        holder=holder,
        since=run.since,
        position=run.position,
        cursor=run.cursor,
        pages=run.pages,
        records=run.records,
        retries=run.retries,
        deferred=run.deferred,
        stalls=run.stalls,
        pending_cursor=run.pending_cursor,
    )


def _stale(run: SyncRun, now: datetime, lease: float) -> bool:
    beat = run.heartbeat_at or run.started_at or run.created_at
    return beat < now - timedelta(seconds=lease)


def _take(run: SyncRun, holder: str, now: datetime) -> RunState:
    if run.holder is not None:
        run.resumed += 1
        run.stalls += 1
    run.holder = holder
    run.heartbeat_at = now
    return _state(run, holder)


def begin_run(
    session: Session,
    sync_id: str,
    *,
    full_refresh: bool,
    task_id: str | None,
    holder: str,
    since_of: Callable[[Any], Any],
    lease: float = LEASE_SECONDS,
    now: datetime | None = None,
) -> Started:
    """Start a run of a sync, resume one left behind, or say why not.

    Args:
        since_of: turns the sync's cursor into the run's filter (the lookback); full refreshes
            read from the start.
    """
    now = now or utcnow()
    sync = session.get(SyncDefinition, sync_id, with_for_update=True, populate_existing=True)
    if sync is None:
        raise NotFoundError(f"no sync {sync_id}.")
    if task_id:
        own = session.scalars(
            select(SyncRun).where(SyncRun.task_id == task_id).order_by(SyncRun.created_at.desc())
        ).first()
        if own is not None and own.sync_id == sync_id:
            if own.status not in ACTIVE:
                return Started("finished", own)
            if own.holder is None or _stale(own, now, lease):
                return Started("resumed", own, _take(own, holder, now))
            return Started("mine", own)
    slot = sync.backfill_run_id if full_refresh else sync.active_run_id
    if slot is not None:
        run = session.get(SyncRun, slot)
        if run is not None and run.status in ACTIVE:
            if not _stale(run, now, lease):
                return Started("busy", run)
            return Started("resumed", run, _take(run, holder, now))
    cursor = session.get(SyncCursor, sync_id)
    value = cursor.value if cursor is not None else None
    run = SyncRun(
        sync_id=sync_id,
        status="running",
        full_refresh=full_refresh,
        task_id=task_id,
        holder=holder,
        heartbeat_at=now,
        started_at=now,
        created_at=now,
        since=None if full_refresh else since_of(value),
        cursor=value,
        pages=0,
        records=0,
        retries=0,
        deferred=0,
        resumed=0,
        stalls=0,
    )
    session.add(run)
    session.flush()
    if full_refresh:
        sync.backfill_run_id = run.id
    else:
        sync.active_run_id = run.id
    return Started("started", run, _state(run, holder))


def claim_run(
    session: Session,
    run_id: str,
    holder: str,
    *,
    sync_id: str | None = None,
    full_refresh: bool | None = None,
    lease: float = LEASE_SECONDS,
    now: datetime | None = None,
) -> RunState | Literal["held", "ended"]:
    """Take a run over for a continuation: released by its last holder, or its lease stale.

    Returns ``"held"`` while another execution holds it, ``"ended"`` once it is over.

    Raises:
        NotFoundError: no such run of that sync (a continuation names its own run).
    """
    now = now or utcnow()
    run = session.get(SyncRun, run_id, with_for_update=True, populate_existing=True)
    if run is None or (sync_id is not None and run.sync_id != sync_id):
        raise NotFoundError(f"no run {run_id!r} of sync {sync_id!r}.")
    if full_refresh is not None and run.full_refresh != full_refresh:
        raise NotFoundError(f"run {run_id!r} is not a {'backfill' if full_refresh else 'run'}.")
    if run.status not in ACTIVE:
        return "ended"
    if run.holder is not None and not _stale(run, now, lease):
        return "held"
    return _take(run, holder, now)


def get_run(session: Session, run_id: str) -> SyncRun | None:
    """The run with this id, or None."""
    return session.get(SyncRun, run_id)


def hand_off_run(
    session: Session,
    state: RunState,
    *,
    retries: int = 0,
    countdown: float = 0.0,
    now: datetime | None = None,
) -> bool:
    """Release a run the caller holds, for a continuation that claims it after ``countdown``.

    Adds the retries made since the last commit. The heartbeat is set ``countdown`` ahead, so a
    continuation waiting longer than the lease is not taken for a lost worker meanwhile.
    Returns False, writing nothing, when the caller no longer holds the run.
    """
    result = session.execute(
        update(SyncRun)
        .where(SyncRun.id == state.run_id, SyncRun.holder == state.holder)
        .values(
            holder=None,
            retries=SyncRun.retries + retries,
            heartbeat_at=(now or utcnow()) + timedelta(seconds=countdown),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def touch_run(session: Session, state: RunState, now: datetime | None = None) -> bool:
    """Prove the holder alive; False when it lost the run."""
    result = session.execute(
        update(SyncRun)
        .where(SyncRun.id == state.run_id, SyncRun.holder == state.holder)
        .where(SyncRun.status == "running")
        .values(heartbeat_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _close(session: Session, run: SyncRun, status: str, error: str | None) -> None:
    run.status = status
    run.error = error
    run.finished_at = utcnow()
    run.holder = None
    run.position = None
    session.execute(delete(SyncRunPosition).where(SyncRunPosition.run_id == run.id))
    sync = session.get(SyncDefinition, run.sync_id, with_for_update=True, populate_existing=True)
    if sync is not None:
        if sync.active_run_id == run.id:
            sync.active_run_id = None
        if sync.backfill_run_id == run.id:
            sync.backfill_run_id = None
    session.flush()


def finish_run(
    session: Session,
    state: RunState,
    *,
    error: str | None = None,
    retries: int = 0,
    order: str = "oldest_first",
) -> SyncRun | None:
    """End a run the caller holds: succeeded, or failed with ``error``; None if it lost it.

    A newest-first run that succeeds moves the sync's cursor to the highest replication value
    it read (never back); a delta run replaces it with the provider's cursor it was handed.
    Either has read back to where the previous run began, so the cursor passes nothing unread.
    """
    run = session.get(SyncRun, state.run_id, with_for_update=True, populate_existing=True)
    if run is None or run.status != "running" or run.holder != state.holder:
        return None
    run.retries += retries
    if error is None and order in ("newest_first", "delta") and run.pending_cursor is not None:
        _hand_cursor(session, run, replace=order == "delta")
    _close(session, run, "failed" if error else "succeeded", error)
    return run


_UPSERT_CURSOR = (
    "INSERT INTO sync_cursors (sync_id, value, updated_at) VALUES (:sync_id, :cursor, :now) "
    "ON CONFLICT (sync_id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


def _hand_cursor(session: Session, run: SyncRun, *, replace: bool) -> None:
    """Move the sync's cursor to the run's pending cursor, the run's cursor with it.

    Newest first: forward only, read under a lock (a first cursor inserted by another run
    meanwhile is compared with, not overwritten: :func:`store.run_pages.move_cursor`). Delta:
    replaced, whatever was stored, as a delta cursor is no value to compare.
    """
    driver = Driver(session)
    params = {"sync_id": run.sync_id, "run_id": run.id, "now": driver.stamp(utcnow())}
    if replace:
        driver.run(_UPSERT_CURSOR, {**params, "cursor": driver.json(run.pending_cursor)})
        value = run.pending_cursor
    else:
        value = move_cursor(driver, params, run.pending_cursor)
    run.cursor = value


def fail_run(session: Session, run_id: str, error: str) -> bool:
    """End a run as failed whoever holds it (its sync or connection is gone, say)."""
    run = session.get(SyncRun, run_id, with_for_update=True, populate_existing=True)
    if run is None or run.status not in ACTIVE:
        return False
    _close(session, run, "failed", error)
    return True


def stale_runs(
    session: Session, *, lease: float = LEASE_SECONDS, now: datetime | None = None
) -> Sequence[SyncRun]:
    """Runs in progress whose lease went stale: their worker was lost."""
    cutoff = (now or utcnow()) - timedelta(seconds=lease)
    beat = func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at, SyncRun.created_at)
    return session.scalars(select(SyncRun).where(SyncRun.status.in_(ACTIVE), beat < cutoff)).all()


def run_view(run: SyncRun) -> dict[str, Any]:
    """A run as ``syncs status --json`` shows it (CONTRACT.md), with the fleet's extras."""
    return {
        "run_id": run.id,
        "status": run.status,
        "full_refresh": run.full_refresh,
        "records": run.records,
        "pages": run.pages,
        "retries": run.retries,
        "deferred": run.deferred,
        "resumed": run.resumed,
        "cursor": run.cursor,
        "started_at": iso_z(run.started_at),
        "finished_at": iso_z(run.finished_at),
        "error": run.error,
    }
