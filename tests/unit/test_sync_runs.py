"""Sync runs in the store: one at a time, leases, fenced page commits, a cursor that never moves
back, and the backfill's own slot. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store import SyncCursor, SyncDefinition, SyncRun, session_scope
from spark_integrations.store.records import upsert_records
from spark_integrations.store.runs import (
    begin_run,
    claim_run,
    commit_page,
    fail_run,
    finish_run,
    later,
    stale_runs,
    touch_run,
)
from spark_integrations.store.syncs import reset_cursor
from spark_integrations.store.types import utcnow

LEASE = 60.0


def begin(store_url: str, sync_id: str, holder: str, task_id: str, full: bool = False) -> object:
    with session_scope(store_url) as session:
        return begin_run(
            session,
            sync_id,
            full_refresh=full,
            task_id=task_id,
            holder=holder,
            since_of=lambda cursor: cursor,
        )


def test_a_second_trigger_is_busy_and_a_backfill_has_its_own_slot(
    store_url: str, sync_id: str
) -> None:
    first = begin(store_url, sync_id, "h1", "t1")
    second = begin(store_url, sync_id, "h2", "t2")
    backfill = begin(store_url, sync_id, "h3", "t3", full=True)
    second_backfill = begin(store_url, sync_id, "h4", "t4", full=True)
    assert first.kind == "started"  # type: ignore[attr-defined]
    assert second.kind == "busy"  # type: ignore[attr-defined]
    assert second.run.id == first.run.id  # type: ignore[attr-defined]
    assert backfill.kind == "started"  # type: ignore[attr-defined]
    assert second_backfill.kind == "busy"  # type: ignore[attr-defined]


def test_a_redelivered_message_finds_its_own_run(store_url: str, sync_id: str) -> None:
    started = begin(store_url, sync_id, "h1", "t1")
    mine = begin(store_url, sync_id, "h2", "t1")
    assert mine.kind == "mine"  # type: ignore[attr-defined]
    state = started.state  # type: ignore[attr-defined]
    with session_scope(store_url) as session:
        assert commit_page(
            session,
            state,
            position="p1",
            page_max=5,
            records=2,
            retries=1,
            deferred=0,
            release=True,
        )
    # Released at a hand-off: a redelivery of the same message takes it over.
    resumed = begin(store_url, sync_id, "h2", "t1")
    assert resumed.kind == "resumed"  # type: ignore[attr-defined]
    assert resumed.state.position == "p1"  # type: ignore[attr-defined]
    with session_scope(store_url) as session:
        assert finish_run(session, resumed.state) is not None  # type: ignore[attr-defined]
    again = begin(store_url, sync_id, "h3", "t1")
    assert again.kind == "finished"  # type: ignore[attr-defined]
    assert again.run.records == 2 and again.run.pages == 1  # type: ignore[attr-defined]


def test_pages_are_fenced_on_the_holder(store_url: str, sync_id: str) -> None:
    started = begin(store_url, sync_id, "h1", "t1")
    state = started.state  # type: ignore[attr-defined]
    with session_scope(store_url) as session:
        run = session.get(SyncRun, state.run_id)
        assert run is not None
        run.heartbeat_at = utcnow() - timedelta(seconds=LEASE + 5)
    # The holder stalled past its lease; a continuation takes the run over.
    with session_scope(store_url) as session:
        taken = claim_run(session, state.run_id, "h2", lease=LEASE)
    assert not isinstance(taken, str)
    # The old holder's page is refused, and nothing of it is written.
    with session_scope(store_url) as session:
        upsert_records(session, sync_id, [(1, {"id": 1})])
        ok = commit_page(
            session,
            state,
            position="x",
            page_max=9,
            records=1,
            retries=0,
            deferred=0,
            release=False,
        )
        assert not ok
        session.rollback()
    with session_scope(store_url) as session:
        assert not touch_run(session, state)
        assert session.get(SyncCursor, sync_id) is None
        run = session.get(SyncRun, state.run_id)
        assert run is not None and run.resumed == 1 and run.pages == 0
        assert claim_run(session, state.run_id, "h3", lease=LEASE) == "held"
        assert finish_run(session, state) is None
        assert finish_run(session, taken) is not None
        assert claim_run(session, state.run_id, "h3", lease=LEASE) == "ended"


def test_the_cursor_never_moves_back(store_url: str, sync_id: str) -> None:
    incremental = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    backfill = begin(store_url, sync_id, "h2", "t2", full=True).state  # type: ignore[attr-defined]
    with session_scope(store_url) as session:
        assert commit_page(
            session,
            incremental,
            position=None,
            page_max="2026-01-05",
            records=1,
            retries=0,
            deferred=0,
            release=False,
        )
    with session_scope(store_url) as session:
        assert commit_page(
            session,
            backfill,
            position="p",
            page_max="2026-01-01",
            records=1,
            retries=0,
            deferred=0,
            release=False,
        )
    with session_scope(store_url) as session:
        cursor = session.get(SyncCursor, sync_id)
        assert cursor is not None and cursor.value == "2026-01-05"


def test_a_stale_run_is_listed_taken_over_by_a_trigger_and_can_be_failed(
    store_url: str, sync_id: str
) -> None:
    state = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    with session_scope(store_url) as session:
        assert stale_runs(session, lease=LEASE) == []
        run = session.get(SyncRun, state.run_id)
        assert run is not None
        run.heartbeat_at = utcnow() - timedelta(seconds=LEASE + 1)
    with session_scope(store_url) as session:
        assert [r.id for r in stale_runs(session, lease=LEASE)] == [state.run_id]
    takeover = begin(store_url, sync_id, "h2", "t2")
    assert takeover.kind == "resumed"  # type: ignore[attr-defined]
    # The run keeps the task id that started it: its waiter gets the outcome.
    assert takeover.run.task_id == "t1"  # type: ignore[attr-defined]
    with session_scope(store_url) as session:
        assert fail_run(session, state.run_id, "the connection was removed")
        sync = session.get(SyncDefinition, sync_id)
        assert sync is not None and sync.active_run_id is None
    assert begin(store_url, sync_id, "h3", "t3").kind == "started"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(None, 3, 3), (3, None, 3), (2, 5, 5), (5, 2, 5), ("b", "a", "b"), (1, "2", "2")],
)
def test_later(a: object, b: object, expected: object) -> None:
    assert later(a, b) == expected


def test_a_continuation_names_a_run_of_its_own_sync(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    with session_scope(store_url) as session:
        with pytest.raises(NotFoundError):
            claim_run(session, state.run_id, "h2", sync_id="another-sync")
        with pytest.raises(NotFoundError):
            claim_run(session, state.run_id, "h2", sync_id=sync_id, full_refresh=True)


def test_takeovers_without_a_page_count_as_stalls(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    holder = state
    for n in range(1, 4):
        with session_scope(store_url) as session:
            run = session.get(SyncRun, state.run_id)
            assert run is not None
            run.heartbeat_at = utcnow() - timedelta(seconds=LEASE + 1)
        with session_scope(store_url) as session:
            taken = claim_run(session, state.run_id, f"h{n + 1}", lease=LEASE)
        assert not isinstance(taken, str) and taken.stalls == n
        holder = taken
    with session_scope(store_url) as session:
        assert commit_page(
            session,
            holder,
            position="p",
            page_max=1,
            records=1,
            retries=0,
            deferred=0,
            release=True,
        )
        run = session.get(SyncRun, state.run_id)
        assert run is not None and run.stalls == 0 and run.resumed == 3


def test_reset_is_refused_while_a_run_is_in_progress(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    with session_scope(store_url) as session, pytest.raises(UsageError, match="in progress"):
        reset_cursor(session, sync_id)
    with session_scope(store_url) as session:
        assert finish_run(session, state) is not None
    with session_scope(store_url) as session:
        reset_cursor(session, sync_id)
