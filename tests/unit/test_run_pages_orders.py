"""store.run_pages and store.runs for newest-first and delta streams: a page commits its
position and the run's pending cursor, never the sync's cursor; the run's end moves it (newest
first: forward to the highest value read; delta: replaced by the provider's cursor). On SQLite
and PostgreSQL, one round trip per page on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from spark_integrations.store import SyncCursor, session_scope
from spark_integrations.store.engine import engine_for
from spark_integrations.store.runs import Committed, RunState, claim_run, finish_run, hand_off_run
from tests.unit.test_run_pages import begin, cursor_of, run_of
from tests.unit.test_run_pages import commit as commit_page


def commit(
    store_url: str,
    state: RunState,
    position: Any,
    *,
    page_max: Any = None,
    order: str,
    page_cursor: Any = None,
) -> Committed:
    """A page of one record, followed unless it is the last (no position)."""
    return commit_page(
        store_url,
        state,
        position,
        page_max=page_max,
        records=1,
        follow=position is not None,
        order=order,
        page_cursor=page_cursor,
    )


def finish(store_url: str, state: RunState, *, order: str, error: str | None = None) -> None:
    with session_scope(store_url) as session:
        assert finish_run(session, state, error=error, order=order) is not None


def set_cursor(store_url: str, sync_id: str, value: Any) -> None:
    with session_scope(store_url) as session:
        session.merge(SyncCursor(sync_id=sync_id, value=value))


@contextmanager
def statements(store_url: str) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        seen.append(text)

    engine = engine_for(store_url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_newest_first_pages_keep_the_cursor_until_the_run_finishes(
    store_url: str, sync_id: str
) -> None:
    set_cursor(store_url, sync_id, "t10")
    state = begin(store_url, sync_id, "h1")
    assert commit(store_url, state, "p2", page_max="t30", order="newest_first")
    assert commit(store_url, state, "p3", page_max="t20", order="newest_first")
    # The pages came newest first: the sync's cursor has not moved; the run keeps the highest.
    assert cursor_of(store_url, sync_id) == "t10"
    run = run_of(store_url, state.run_id)
    assert (run.position, run.pending_cursor, run.cursor, run.pages) == ("p3", "t30", "t10", 2)
    assert commit(store_url, state, None, page_max="t12", order="newest_first")
    assert cursor_of(store_url, sync_id) == "t10"
    finish(store_url, state, order="newest_first")
    assert cursor_of(store_url, sync_id) == "t30"
    assert run_of(store_url, state.run_id).cursor == "t30"


def test_a_newest_first_run_resumed_keeps_its_pending_cursor(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1")
    commit(store_url, state, "p2", page_max="t50", order="newest_first")
    with session_scope(store_url) as session:
        assert hand_off_run(session, state)
    with session_scope(store_url) as session:
        resumed = claim_run(session, state.run_id, "h2")
    assert isinstance(resumed, RunState) and resumed.pending_cursor == "t50"
    commit(store_url, resumed, None, page_max="t40", order="newest_first")
    assert cursor_of(store_url, sync_id) is None
    finish(store_url, resumed, order="newest_first")
    assert cursor_of(store_url, sync_id) == "t50"


def test_a_failed_newest_first_run_leaves_the_cursor(store_url: str, sync_id: str) -> None:
    set_cursor(store_url, sync_id, "t10")
    state = begin(store_url, sync_id, "h1")
    commit(store_url, state, "p2", page_max="t90", order="newest_first")
    finish(store_url, state, order="newest_first", error="the provider went away")
    assert cursor_of(store_url, sync_id) == "t10"


def test_newest_first_never_moves_the_cursor_back(store_url: str, sync_id: str) -> None:
    """A backfill finishing below a cursor another run moved meanwhile leaves it."""
    state = begin(store_url, sync_id, "h1", full=True)
    commit(store_url, state, None, page_max="t20", order="newest_first")
    set_cursor(store_url, sync_id, "t25")
    finish(store_url, state, order="newest_first")
    assert cursor_of(store_url, sync_id) == "t25"


def test_a_delta_run_replaces_the_cursor_with_the_providers(store_url: str, sync_id: str) -> None:
    set_cursor(store_url, sync_id, "https://graph.test/delta?token=zzz-old")
    state = begin(store_url, sync_id, "h1")
    assert state.since == "https://graph.test/delta?token=zzz-old"
    commit(store_url, state, "next-1", page_max="m5", order="delta")
    assert run_of(store_url, state.run_id).pending_cursor is None
    new = "https://graph.test/delta?token=aaa-new"  # smaller as text: replaced, not compared
    commit(store_url, state, None, order="delta", page_cursor=new)
    assert cursor_of(store_url, sync_id) == "https://graph.test/delta?token=zzz-old"
    finish(store_url, state, order="delta")
    assert cursor_of(store_url, sync_id) == new


def test_a_first_delta_run_stores_its_cursor(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1")
    commit(store_url, state, None, order="delta", page_cursor={"deltaLink": "d1"})
    finish(store_url, state, order="delta")
    assert cursor_of(store_url, sync_id) == {"deltaLink": "d1"}


def test_a_newest_first_page_is_one_round_trip_on_postgresql(store_url: str, sync_id: str) -> None:
    state = begin(store_url, sync_id, "h1")
    with statements(store_url) as seen:
        commit(store_url, state, "p2", page_max="t30", order="newest_first")
    page = [s for s in seen if not s.lstrip().upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT"))]
    if store_url.startswith("postgresql"):
        assert len(page) == 1, page
    assert any("pending_cursor" in s for s in page)
