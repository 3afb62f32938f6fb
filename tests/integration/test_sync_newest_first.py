"""A newest-first stream end to end (the sandbox's ``items_newest``, ``order=desc``): real
workers, a real sandbox, the store on PostgreSQL, the worker SIGKILLed mid-run.

A newest-first run commits each page's records and position, never the sync's cursor: the
cursor moves only when the run has read back to where the previous run began. So a run killed
midway leaves the cursor where it was, is taken over at its committed position with its fixed
``since``, and loses nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from spark_integrations.store import Record, SyncRun, session_scope
from spark_integrations.store.syncs import add_sync
from tests.integration.fleet import add_connection, client_app, start_sandbox, start_workers, worker
from tests.integration.test_syncs import (
    KEY,
    cursor_of,
    database,
    reach,
    run_to_end,
    served,
    stored,
    trigger,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

RECORDS = 4000


@pytest.fixture
def env(redis_env: dict[str, str]) -> dict[str, str]:
    return {**redis_env, "SPARK_INTEGRATIONS_SYNC_LEASE": "4"}


def running(env: dict[str, str], sync_id: str) -> SyncRun:
    with session_scope(database(env)) as session:
        run = session.scalars(
            select(SyncRun).where(SyncRun.sync_id == sync_id, SyncRun.status == "running")
        ).first()
        assert run is not None
        return run


def count_of(env: dict[str, str], sync_id: str) -> int:
    with session_scope(database(env)) as session:
        return int(session.scalar(select(func.count()).where(Record.sync_id == sync_id)) or 0)


def test_a_newest_first_sync_killed_midway_is_exactly_once(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    box = start_sandbox(
        env, short_tmp, processes, f"--records={RECORDS}", "--rate-limit=40", f"--api-key={KEY}"
    )
    # 5 pages a second: a run of 40 pages is long enough to be killed in its middle.
    cid = add_connection(env, "newest", {"base_url": box.url, "rate_limit": 5}, f"api_key={KEY}")
    with session_scope(database(env)) as session:
        sync_id = add_sync(
            session, connection_id=cid, stream="items_newest", schedule=None, destination="store"
        ).id
    app = client_app(env)
    current = start_workers(env, short_tmp, processes)[0]

    def kill_midway(at_page: int, name: str) -> Any:
        """Kill the worker once the run committed ``at_page`` pages; start another."""
        reach(app, env, sync_id, at_page)
        before = cursor_of(env, sync_id)
        current.kill_main()
        run = running(env, sync_id)
        assert run.pages >= at_page and run.pending_cursor is not None
        # Pages committed, the sync's cursor untouched: records below the pages read are
        # still unread, and the next run would skip them if the cursor had moved.
        assert cursor_of(env, sync_id) == before
        fresh = worker(env, short_tmp / f"worker-{name}.log", f"--hostname={name}@%h")
        processes.append(fresh)
        fresh.start().wait_ready()
        return fresh, before

    # The first run reads everything, newest first, and is killed a third of the way.
    trigger(app, sync_id)
    current, before = kill_midway(12, "after-first")
    assert before is None
    first = run_to_end(app, sync_id)
    truth = served(box.url)
    assert len(truth) == RECORDS
    assert stored(env, sync_id) == truth, "every record, in its served version"
    assert count_of(env, sync_id) == RECORDS, "each record once"
    newest = max(r["updated_at"] for r in truth.values())
    assert cursor_of(env, sync_id) == newest and first["cursor"] == newest

    # 1,500 records change (newer than the cursor); the next run reads them newest first
    # down to the cursor and is killed midway: the cursor stays until the run finishes.
    changed = requests.post(f"{box.url}/_sandbox/update", json={"count": 1500}, timeout=10)
    assert changed.json()["updated"] == 1500
    trigger(app, sync_id)
    current, before = kill_midway(5, "after-second")
    assert before == newest
    second = run_to_end(app, sync_id)
    truth = served(box.url)
    assert stored(env, sync_id) == truth, "every change delivered, none lost to the kill"
    assert count_of(env, sync_id) == RECORDS
    newest = max(r["updated_at"] for r in truth.values())
    assert cursor_of(env, sync_id) == newest and second["cursor"] == newest

    # A rerun reads back to the cursor (inclusive) and finds nothing new.
    again = run_to_end(app, sync_id)
    assert (again["records"], again["pages"]) == (0, 1)
    assert cursor_of(env, sync_id) == newest
    with session_scope(database(env)) as session:
        runs = session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)).all()
    taken_over = [r for r in runs if r.resumed]
    assert len(taken_over) >= 2 and all(r.status == "succeeded" for r in runs), [
        (r.status, r.pages, r.resumed) for r in runs
    ]
