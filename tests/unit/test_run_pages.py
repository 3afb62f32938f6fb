"""store.run_pages: a page's commit in one round trip (the fence, the position followed, the
sync's cursor compared-and-set), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from spark_integrations.store import SyncCursor, SyncRun, session_scope
from spark_integrations.store.models import SyncRunPosition
from spark_integrations.store.runs import (
    Committed,
    RunState,
    begin_run,
    claim_run,
    commit_page,
    finish_run,
    later,
    position_digest,
)
from spark_integrations.store.types import utcnow

LEASE = 60.0


def begin(store_url: str, sync_id: str, holder: str, *, full: bool = False) -> RunState:
    with session_scope(store_url) as session:
        started = begin_run(
            session,
            sync_id,
            full_refresh=full,
            task_id=f"task-{holder}",
            holder=holder,
            since_of=lambda cursor: cursor,
        )
    assert started.state is not None
    return started.state


def commit(
    store_url: str,
    state: RunState,
    position: Any,
    *,
    page_max: Any = None,
    release: bool = False,
    follow: bool = True,
    records: int = 2,
    order: str = "oldest_first",
    page_cursor: Any = None,
) -> Committed:
    with session_scope(store_url) as session:
        done = commit_page(
            session,
            state,
            position=position,
            page_max=page_max,
            records=records,
            retries=0,
            deferred=0,
            release=release,
            follow=follow,
            order=order,
            page_cursor=page_cursor,
        )
        if not done:
            session.rollback()
    return done


def positions_of(store_url: str, run_id: str) -> dict[str, int]:
    with session_scope(store_url) as session:
        rows = session.execute(
            select(SyncRunPosition.digest, SyncRunPosition.page).where(
                SyncRunPosition.run_id == run_id
            )
        ).all()
    return {digest: page for digest, page in rows}


def run_of(store_url: str, run_id: str) -> SyncRun:
    with session_scope(store_url) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run


def cursor_of(store_url: str, sync_id: str) -> Any:
    with session_scope(store_url) as session:
        row = session.get(SyncCursor, sync_id)
        return None if row is None else row.value


def test_a_page_follows_its_position_in_its_commit(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1")
    assert commit(store_url, state, "p2") == Committed(True, None)
    assert commit(store_url, state, "p3") == Committed(True, None)
    assert positions_of(store_url, state.run_id) == {
        position_digest("p2"): 1,
        position_digest("p3"): 2,
    }
    run = run_of(store_url, state.run_id)
    assert (run.pages, run.records, run.position, run.holder) == (2, 4, "p3", "h1")


def test_a_cycle_is_committed_reported_and_never_released(store_url: str, sync_id: str) -> None:
    """Page 3 hands back p2 again (page 1 handed it back first): the page is committed, the
    position not recorded twice, and the run stays held though the task asked to release it,
    so the caller can end it."""
    state = begin(store_url, sync_id, "h1")
    commit(store_url, state, "p2")
    commit(store_url, state, "p3")
    done = commit(store_url, state, "p2", release=True)
    assert done and done.loop_from == 1
    run = run_of(store_url, state.run_id)
    assert (run.pages, run.position, run.holder) == (3, "p2", "h1")
    assert positions_of(store_url, state.run_id)[position_digest("p2")] == 1
    with session_scope(store_url) as session:
        assert finish_run(session, state, error="loops") is not None


def test_without_a_cycle_a_release_releases(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1")
    assert commit(store_url, state, "p2", release=True)
    assert run_of(store_url, state.run_id).holder is None
    with session_scope(store_url) as session:
        assert claim_run(session, state.run_id, "h2", lease=LEASE) != "held"


def test_a_page_of_a_holder_that_lost_the_run_records_nothing(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1")
    assert commit(store_url, state, "p2", page_max=3)
    with session_scope(store_url) as session:
        run = session.get(SyncRun, state.run_id)
        assert run is not None
        run.heartbeat_at = utcnow() - timedelta(seconds=LEASE + 5)
    with session_scope(store_url) as session:
        taken = claim_run(session, state.run_id, "h2", lease=LEASE)
    assert not isinstance(taken, str)
    lost = commit(store_url, state, "p3", page_max=9, release=True)
    assert not lost and lost == Committed(False)
    assert positions_of(store_url, state.run_id) == {position_digest("p2"): 1}
    assert cursor_of(store_url, sync_id) == 3
    run = run_of(store_url, state.run_id)
    assert (run.pages, run.position, run.holder) == (1, "p2", "h2")


@pytest.mark.parametrize(
    "maxima",
    [
        ["2026-01-02", "2026-01-01", "2026-01-03", None, "2026-01-03"],
        [5, 3, 7, 7.5, 100],
        # Floats whose text SQLite writes differently from JSON (1e+16 as 1.0e+16).
        [1.5, 1e16, 2e16, 3],
        # Text that looks like a number stays text; mixed types compare as text.
        ["5", "10", 7, "é"],
    ],
    ids=["text", "numbers", "big-floats", "mixed"],
)
def test_the_cursor_and_the_runs_cursor_follow_the_greatest_page(
    store_url: str, sync_id: str, maxima: list[Any]
) -> None:
    state = begin(store_url, sync_id, "h1")
    expected = None
    for n, page_max in enumerate(maxima):
        commit(store_url, state, f"p{n}", page_max=page_max)
        expected = later(expected, page_max)
        assert cursor_of(store_url, sync_id) == expected
        assert run_of(store_url, state.run_id).cursor == expected == state.cursor


def test_runs_interleaving_move_the_cursor_only_forward(store_url: str, sync_id: str) -> None:
    """A backfill beside an incremental run: each moves the sync's cursor from what the other
    left (its own last write is no longer there), never back; a run's cursor is the sync's as
    its page left it."""
    incremental = begin(store_url, sync_id, "h1")
    backfill = begin(store_url, sync_id, "h2", full=True)
    commit(store_url, incremental, "i1", page_max=5)
    commit(store_url, backfill, "b1", page_max=7)
    assert cursor_of(store_url, sync_id) == 7
    commit(store_url, incremental, "i2", page_max=6)
    assert cursor_of(store_url, sync_id) == 7
    assert incremental.cursor == run_of(store_url, incremental.run_id).cursor == 7
    commit(store_url, incremental, "i3", page_max=8)
    commit(store_url, backfill, "b2", page_max=2)
    assert cursor_of(store_url, sync_id) == 8
    assert backfill.cursor == run_of(store_url, backfill.run_id).cursor == 8


def test_a_page_left_below_the_cursor_keeps_the_stored_time(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1")
    commit(store_url, state, "p1", page_max=5)
    with session_scope(store_url) as session:
        row = session.get(SyncCursor, sync_id)
        assert row is not None
        written = row.updated_at
    commit(store_url, state, "p2", page_max=4)
    commit(store_url, state, "p3", page_max=None)
    with session_scope(store_url) as session:
        row = session.get(SyncCursor, sync_id)
        assert row is not None and row.value == 5 and row.updated_at == written


def test_a_first_cursor_stored_meanwhile_by_another_run_is_never_moved_back(
    store_url: str, sync_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs find no cursor stored; the other stores a later one just before this run's
    insert: this run compares with it instead of overwriting it (its page is older)."""
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers: no other run can store a cursor in between")
    from sqlalchemy import create_engine, text

    from spark_integrations.store import driver as driver_module

    backfill = begin(store_url, sync_id, "h2", full=True)
    other = create_engine(store_url)
    real_run = driver_module.Driver.run
    raced: list[str] = []

    def run(self: Any, sql: str, params: Any) -> Any:
        if sql.startswith("INSERT INTO sync_cursors") and not raced:
            # The other run's first page commits its cursor now, between this run's read of
            # "no cursor" and its insert.
            with other.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO sync_cursors (sync_id, value, updated_at) VALUES (:s, :v, :t)"
                    ),
                    {"s": sync_id, "v": "9", "t": utcnow()},
                )
            raced.append(sql)
        return real_run(self, sql, params)

    monkeypatch.setattr(driver_module.Driver, "run", run)
    try:
        commit(store_url, backfill, "b1", page_max=3)
    finally:
        other.dispose()
    assert raced, "the race was not staged: no first cursor was inserted by this run"
    assert cursor_of(store_url, sync_id) == 9
    assert backfill.cursor == run_of(store_url, backfill.run_id).cursor == 9


def test_a_refused_page_writes_nothing_even_if_its_caller_commits(
    store_url: str, sync_id: str
) -> None:
    """commit_page refused (the lease is another's) leaves the transaction as it found it."""
    state = begin(store_url, sync_id, "h1")
    assert commit(store_url, state, "p2", page_max=3)
    with session_scope(store_url) as session:
        run = session.get(SyncRun, state.run_id)
        assert run is not None
        run.holder = "another"
    with session_scope(store_url) as session:  # committed, not rolled back
        done = commit_page(
            session,
            state,
            position="p3",
            page_max=9,
            records=1,
            retries=0,
            deferred=0,
            release=True,
            follow=True,
        )
        assert not done
    assert positions_of(store_url, state.run_id) == {position_digest("p2"): 1}
    assert cursor_of(store_url, sync_id) == 3
    run = run_of(store_url, state.run_id)
    assert (run.pages, run.position, run.holder) == (1, "p2", "another")
