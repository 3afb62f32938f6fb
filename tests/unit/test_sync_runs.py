"""Sync runs in the store: one at a time, leases, fenced page commits, a cursor that never moves
back, and the backfill's own slot. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
import responses
from sqlalchemy import delete, func, select

from spark_integrations.connectors.positions import position_loop_error
from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store import SyncCursor, SyncDefinition, SyncRun, session_scope
from spark_integrations.store.models import Record, SyncRunPosition
from spark_integrations.store.records import upsert_records
from spark_integrations.store.runs import (
    RunState,
    begin_run,
    claim_run,
    commit_page,
    fail_run,
    finish_run,
    follow_position,
    later,
    position_digest,
    stale_runs,
    touch_run,
)
from spark_integrations.store.syncs import reset_cursor
from spark_integrations.store.types import utcnow
from tests.unit.cycles import LINK_KEY, STYLES, loopy, position, serve_cycle

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


# --- pagination cycles, across the run's tasks ----------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def positions_of(store_url: str, run_id: str) -> dict[str, int]:
    with session_scope(store_url) as session:
        rows = session.execute(
            select(SyncRunPosition.digest, SyncRunPosition.page).where(
                SyncRunPosition.run_id == run_id
            )
        ).all()
    return {digest: page for digest, page in rows}


def commit(store_url: str, state: RunState, next_position: Any, *, release: bool = False) -> Any:
    """Commit one page handing back ``next_position``, as a sync task does; the first page that
    handed it back when the run followed it before, else None."""
    with session_scope(store_url) as session:
        first = follow_position(session, state, next_position)
        assert commit_page(
            session,
            state,
            position=next_position,
            page_max=None,
            records=1,
            retries=0,
            deferred=0,
            release=release and first is None,
        )
    return first


def read_in_shares(store_url: str, sync_id: str, stream: str, per_share: int) -> SyncRun:
    """Read a stream of the fake provider as a chain of sync tasks does: each task claims the
    run, reads ``per_share`` pages, each from the stored position with a new paginator and
    committed with its records, then releases the run to the next task (a hand-off)."""
    holders = (f"task-{n}" for n in count())
    started = begin(store_url, sync_id, next(holders), "t1")
    state: RunState = started.state  # type: ignore[attr-defined]
    for _ in range(50):
        for k in range(per_share):
            page = loopy().read_page(stream, position=state.position)
            with session_scope(store_url) as session:
                upsert_records(session, sync_id, [(r["id"], r) for r in page.records])
                first = None if page.finished else follow_position(session, state, page.position)
                error = None
                if first is not None:
                    error = position_loop_error(
                        connector="loopy",
                        stream=stream,
                        position=page.position,
                        page=state.pages + 1,
                        first_page=first,
                    )
                last = k == per_share - 1 and not page.finished and error is None
                assert commit_page(
                    session,
                    state,
                    position=page.position,
                    page_max=None,
                    records=len(page.records),
                    retries=0,
                    deferred=0,
                    release=last,
                )
                if page.finished or error is not None:
                    run = finish_run(session, state, error=error)
                    assert run is not None
                    return run
        with session_scope(store_url) as session:
            claimed = claim_run(session, state.run_id, next(holders), sync_id=sync_id)
        assert not isinstance(claimed, str), claimed
        state = claimed
    raise AssertionError("the run never ended")


@pytest.mark.parametrize("length", [1, 2, 3])
@pytest.mark.parametrize("style", list(STYLES))
def test_a_cycle_across_hand_offs_ends_the_run_with_its_pages_committed(
    store_url: str, sync_id: str, rsps: responses.RequestsMock, style: str, length: int
) -> None:
    """Each paginator class, cycles of 1, 2 and 3 pages: page 5 hands back the position page
    5 - length handed back. Tasks of two pages each: page 5 is read by the third task, the
    position it repeats was recorded by the first or the second."""
    asked = serve_cycle(rsps, style, at=5, length=length)
    run = read_in_shares(store_url, sync_id, style, per_share=2)
    assert asked() == [1, 2, 3, 4, 5], "no page asked twice: the cycle was caught at once"
    assert run.status == "failed" and run.pages == 5 and run.records == 10
    error = run.error or ""
    shown = position(style, 6 - length)
    if style == "link":
        shown = shown.replace(LINK_KEY, "***")
        assert LINK_KEY not in error
    assert error.startswith(f"loopy's {style} stream loops: page 5 of the run handed back")
    assert f'"{shown}"' in error if isinstance(shown, str) else f"position {shown}," in error
    assert f"which page {5 - length} had handed back already" in error
    assert f"(a cycle of {length} page{'s' if length > 1 else ''})" in error
    with session_scope(store_url) as session:
        stored = session.scalar(select(func.count()).where(Record.sync_id == sync_id))
    assert stored == 10, "the pages read before the cycle stay committed"
    assert positions_of(store_url, run.id) == {}, "a run's positions go with its end"


@pytest.mark.parametrize("style", list(STYLES))
def test_a_stream_without_a_cycle_reads_to_its_end_across_hand_offs(
    store_url: str, sync_id: str, rsps: responses.RequestsMock, style: str
) -> None:
    """Seven pages read by tasks of three: each task asks its first page at the position its
    predecessor stored (a position the run recorded), and that is no cycle."""
    asked = serve_cycle(rsps, style, at=0, last=7)
    run = read_in_shares(store_url, sync_id, style, per_share=3)
    assert run.status == "succeeded", run.error
    assert asked() == [1, 2, 3, 4, 5, 6, 7] and run.pages == 7


def test_a_page_asked_again_after_a_failed_commit_is_no_cycle(store_url: str, sync_id: str) -> None:
    """A page whose commit failed (the store went away, the task died) is asked again: its
    next position was never recorded, since it is recorded in the same transaction."""
    state = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    assert commit(store_url, state, "p2") is None
    with pytest.raises(RuntimeError), session_scope(store_url) as session:
        assert follow_position(session, state, "p3") is None
        raise RuntimeError("the store failed before the commit")
    assert positions_of(store_url, state.run_id) == {position_digest("p2"): 1}
    assert commit(store_url, state, "p3") is None
    assert commit(store_url, state, "p2") == 1, "a position followed before is a cycle"


def test_a_page_asked_again_after_a_takeover_is_no_cycle_and_the_old_holder_records_nothing(
    store_url: str, sync_id: str
) -> None:
    state = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    assert commit(store_url, state, "p2") is None
    with session_scope(store_url) as session:
        run = session.get(SyncRun, state.run_id)
        assert run is not None
        run.heartbeat_at = utcnow() - timedelta(seconds=LEASE + 5)
    with session_scope(store_url) as session:
        taken = claim_run(session, state.run_id, "h2", lease=LEASE)
    assert not isinstance(taken, str) and taken.position == "p2"
    # The old holder, stalled on the page at p2, finally commits it: fenced, nothing recorded.
    with session_scope(store_url) as session:
        follow_position(session, state, "p3")
        assert not commit_page(
            session,
            state,
            position="p3",
            page_max=None,
            records=1,
            retries=0,
            deferred=0,
            release=False,
        )
        session.rollback()
    # The new holder asks the page at p2 again: p3 is new to the run.
    assert commit(store_url, taken, "p3") is None
    assert commit(store_url, taken, "p4") is None
    assert positions_of(store_url, state.run_id) == {
        position_digest("p2"): 1,
        position_digest("p3"): 2,
        position_digest("p4"): 3,
    }


def test_positions_belong_to_one_run(store_url: str, sync_id: str) -> None:
    """The next run, and a backfill beside a run, read the same positions again: no cycle."""
    first = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    backfill = begin(store_url, sync_id, "h2", "t2", full=True).state  # type: ignore[attr-defined]
    for state in (first, backfill):
        assert commit(store_url, state, "p2") is None
        assert commit(store_url, state, "p3") is None
    with session_scope(store_url) as session:
        assert finish_run(session, first) is not None
    assert positions_of(store_url, first.run_id) == {}
    second = begin(store_url, sync_id, "h3", "t3").state  # type: ignore[attr-defined]
    assert commit(store_url, second, "p2") is None
    assert commit(store_url, backfill, "p2") == 1


@pytest.mark.parametrize("same", [("p", "p"), (40, 40), ({"a": 1, "b": [2]}, {"b": [2], "a": 1})])
def test_a_position_is_known_by_its_canonical_json(same: tuple[Any, Any]) -> None:
    assert position_digest(same[0]) == position_digest(same[1])
    assert len(position_digest(same[0])) == 64
    assert position_digest(40) != position_digest("40")
    assert position_digest(None) != position_digest("null")


def test_positions_go_with_their_run(store_url: str, sync_id: str) -> None:
    """Ended by someone else (fail_run), or deleted (retention, the sync removed)."""
    state = begin(store_url, sync_id, "h1", "t1").state  # type: ignore[attr-defined]
    assert commit(store_url, state, "p2") is None
    with session_scope(store_url) as session:
        assert fail_run(session, state.run_id, "the connection was removed")
    assert positions_of(store_url, state.run_id) == {}
    other = begin(store_url, sync_id, "h2", "t2").state  # type: ignore[attr-defined]
    assert commit(store_url, other, "p2") is None
    with session_scope(store_url) as session:
        session.execute(delete(SyncRun).where(SyncRun.id == other.run_id))
    assert positions_of(store_url, other.run_id) == {}
