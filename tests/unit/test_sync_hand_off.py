"""store.runs.hand_off_run: a run released for its continuation, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from spark_integrations.store import session_scope
from spark_integrations.store.runs import (
    Started,
    begin_run,
    claim_run,
    get_run,
    hand_off_run,
)
from spark_integrations.store.types import utcnow


def started(store_url: str, sync_id: str) -> Started:
    with session_scope(store_url) as session:
        return begin_run(
            session,
            sync_id,
            full_refresh=False,
            task_id="t1",
            holder="h1",
            since_of=lambda cursor: cursor,
        )


def test_a_hand_off_releases_the_run_counts_its_retries_and_holds_off_takeovers(
    store_url: str, sync_id: str
) -> None:
    begun = started(store_url, sync_id)
    assert begun.state is not None
    now = utcnow()
    with session_scope(store_url) as session:
        assert hand_off_run(session, begun.state, retries=2, countdown=300.0, now=now)
    with session_scope(store_url) as session:
        run = get_run(session, begun.state.run_id)
        assert run is not None
        assert run.holder is None and run.retries == 2 and run.status == "running"
        assert abs((run.heartbeat_at - (now + timedelta(seconds=300))).total_seconds()) < 1
        # Its continuation claims it, released as it is, though its heartbeat lies ahead.
        claimed = claim_run(session, run.id, "h2", sync_id=sync_id, full_refresh=False)
        assert not isinstance(claimed, str) and claimed.holder == "h2"


def test_a_holder_that_lost_the_run_hands_nothing_off(store_url: str, sync_id: str) -> None:
    begun = started(store_url, sync_id)
    assert begun.state is not None
    with session_scope(store_url) as session:
        assert hand_off_run(session, begun.state)
    with session_scope(store_url) as session:
        claim_run(session, begun.state.run_id, "h2", sync_id=sync_id)
    with session_scope(store_url) as session:
        assert not hand_off_run(session, begun.state, retries=5)  # h1 holds it no more
        run = get_run(session, begun.state.run_id)
        assert run is not None and run.holder == "h2" and run.retries == 0
    with session_scope(store_url) as session:
        assert get_run(session, "no-such-run") is None
