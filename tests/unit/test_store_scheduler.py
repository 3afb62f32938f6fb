"""StoreScheduler's tick, on a real store and a real (or unreachable) broker, without beat.

The scheduler is driven by calling ``tick()`` as beat's loop does; the messages it sends are
taken from the broker as a worker would take them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from spark_integrations import settings
from spark_integrations.constants import QUEUE_BACKFILLS, QUEUE_SYNCS, TASK_SYNC
from spark_integrations.migrations import runner
from spark_integrations.store import SecretBox, SyncRun, session_scope
from spark_integrations.store.connections import add_connection
from spark_integrations.store.syncs import add_sync, get_sync
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.context import current_settings
from spark_integrations.workers.scheduler import SYNC_TICK, StoreScheduler
from tests.unit.conftest import dispose_engines


@pytest.fixture
def store(clean_env: Path) -> Iterator[str]:
    """The embedded store of a fresh HOME, migrated; settings re-read by task code."""
    current_settings.cache_clear()
    url = settings.load().database_url
    clean_env.mkdir(parents=True, exist_ok=True)
    yield url
    current_settings.cache_clear()
    dispose_engines(url)


def migrated(url: str) -> str:
    runner.upgrade(url)
    return url


@contextmanager
def scheduler(broker: str, tmp_path: Path) -> Iterator[StoreScheduler]:
    app = Celery("scheduler-test", broker=broker, loader="app", set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=False,
        broker_connection_timeout=2,
        # No default entry (celery.backend_cleanup), whose crontab would reach for the current
        # app: beat's static schedule is Celery's business, the store's part is under test.
        result_expires=None,
    )
    sched = StoreScheduler(app=app, schedule_filename=str(tmp_path / "beat-schedule"))
    try:
        yield sched
    finally:
        sched.close()
        app.close()


def due_sync(url: str, *, with_stale_run: bool = False) -> tuple[str, str | None]:
    """A sync due a second ago (and a run of it whose worker was lost, on request)."""
    with session_scope(url) as session:
        conn = add_connection(
            session,
            SecretBox(settings.load().secret_keys),
            provider="sandbox",
            name=f"c{time.monotonic_ns()}",
            config={},
            secrets={},
            status="active",
        )
        sync = add_sync(session, connection_id=conn.id, stream="items", schedule="every:60")
        sync.next_run_at = utcnow() - timedelta(seconds=1)
        run_id = None
        if with_stale_run:
            old = utcnow() - timedelta(seconds=600)
            run = SyncRun(
                sync_id=sync.id,
                status="running",
                full_refresh=True,
                task_id="the-callers-task-id",
                holder="gone",
                heartbeat_at=old,
                started_at=old,
                created_at=old,
            )
            session.add(run)
            session.flush()
            run_id = run.id
        return sync.id, run_id


def take(app: Celery, queue: str) -> list[dict[str, Any]]:
    """Take the messages waiting in a queue, as a worker would: their task, id and kwargs."""
    out = []
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            _args, kwargs, _embed = message.decode()
            out.append({"task": message.headers["task"], "id": message.headers["id"], **kwargs})
    return out


def test_a_tick_sends_due_syncs_and_lost_runs_once(store: str, tmp_path: Path) -> None:
    """On kombu's in-memory transport: the messages a broker holds, out of other tests' reach."""
    sync_id, run_id = due_sync(migrated(store), with_stale_run=True)
    with scheduler("memory://", tmp_path) as sched:
        assert sched.tick() <= SYNC_TICK
        [due] = take(sched.app, QUEUE_SYNCS)
        assert due == {
            "task": TASK_SYNC,
            "id": due["id"],
            "sync_id": sync_id,
            "full_refresh": False,
        }
        # A full refresh goes back to the backfill queue, under the task id its caller waits on.
        assert take(sched.app, QUEUE_BACKFILLS) == [
            {
                "task": TASK_SYNC,
                "id": "the-callers-task-id",
                "sync_id": sync_id,
                "full_refresh": True,
                "run_id": run_id,
            }
        ]
        with session_scope(store) as session:
            due_next = get_sync(session, sync_id).next_run_at
            assert due_next is not None and due_next > utcnow() + timedelta(seconds=50)
        # The next look at the store: the period is taken, and the lost run was sent within
        # its lease. (Called directly: tick() looks at the store once per whole second.)
        sched.store_tick()
        assert take(sched.app, QUEUE_SYNCS) == []
        assert take(sched.app, QUEUE_BACKFILLS) == []


def test_an_unreachable_broker_is_one_log_line_and_beat_goes_on(
    store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sync_id, _ = due_sync(migrated(store))
    with scheduler("redis://127.0.0.1:1/0", tmp_path) as sched:
        with caplog.at_level(logging.INFO, logger="spark_integrations.workers.scheduler"):
            assert 0 <= sched.tick() <= SYNC_TICK
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and not errors[0].exc_info, caplog.text
        assert sync_id in errors[0].getMessage()
        # Claimed before the send: that period is lost, the next one is due as usual.
        with session_scope(store) as session:
            assert get_sync(session, sync_id).next_run_at > utcnow()


def test_an_unreachable_store_is_one_log_line_while_it_lasts(
    store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Not migrated: every query fails with "no such table", as a store gone wrong would.
    with scheduler("redis://127.0.0.1:1/0", tmp_path) as sched:
        with caplog.at_level(logging.INFO, logger="spark_integrations.workers.scheduler"):
            assert 0 <= sched.tick() <= SYNC_TICK
            for _ in range(2):
                sched.store_tick()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and not errors[0].exc_info, caplog.text
        assert "OperationalError" in errors[0].getMessage()
        assert "\n" not in errors[0].getMessage()
        # The store comes back: beat says so once and goes on.
        migrated(store)
        with caplog.at_level(logging.INFO, logger="spark_integrations.workers.scheduler"):
            sched.store_tick()
        assert "works again" in caplog.text
