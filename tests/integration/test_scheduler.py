"""Beat's store scheduler with real processes: beats, a worker, the sandbox and the store.

Two beats on one PostgreSQL store send each due period of a sync once; a sync added while beat
runs starts when due; a paused sync stops; a run whose worker was lost is sent again under its
task id; the daily purge answers through a real worker.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from spark_integrations import settings
from spark_integrations.constants import QUEUE_MAINTENANCE, TASK_PURGE_HISTORY
from spark_integrations.store import SyncDefinition, SyncRun, session_scope
from spark_integrations.store.retention import TABLES
from spark_integrations.store.syncs import add_sync, set_enabled
from spark_integrations.store.types import utcnow
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    base_env,
    client_app,
    run_cli,
    start_sandbox,
    start_workers,
    wait_for,
)

KEY = "sk-scheduler-test"
PERIOD = 5.0


def parse_stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def start_beat(env: dict[str, str], log: Path, processes: list[Any]) -> FleetProcess:
    beat = FleetProcess(env, ["beat"], log)
    processes.append(beat)
    return beat.start().wait_ready("beat: Starting")


def runs_of(url: str, sync_id: str) -> list[SyncRun]:
    with session_scope(url) as session:
        return list(
            session.scalars(
                select(SyncRun).where(SyncRun.sync_id == sync_id).order_by(SyncRun.created_at)
            )
        )


def none_in_progress(url: str, sync_ids: list[str]) -> bool:
    with session_scope(url) as session:
        busy = session.scalars(
            select(SyncRun.id).where(
                SyncRun.sync_id.in_(sync_ids), SyncRun.status.in_(("queued", "running"))
            )
        ).all()
    return not busy


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_beats_send_each_period_of_a_sync_once(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Two beats, one store, 60 s of syncs due every 5 s: every period is sent exactly once.

    Both beats look at the store on the same whole seconds of the clock, so they race for every
    period of the three syncs. A sync's ``next_run_at`` moves on by exactly one period per claim,
    so the periods claimed are known exactly from where it ends; the beats' logs say how often
    each sync was sent, and the store which runs the worker made of it.
    """
    env = redis_env
    url = env["SPARK_INTEGRATIONS_DATABASE_URL"]
    box = start_sandbox(env, short_tmp, processes, f"--api-key={KEY}", "--records=40", "--churn=2")
    cid = add_connection(env, "two-beats", {"base_url": box.url}, f"api_key={KEY}")
    start_workers(env, short_tmp, processes, count=1, concurrency=2)
    beats = [
        # Each beat keeps its static schedule's state file in a HOME of its own.
        start_beat(
            {**env, "SPARK_INTEGRATIONS_HOME": str(short_tmp / f"beat-home-{i}")},
            short_tmp / f"beat{i}.log",
            processes,
        )
        for i in range(2)
    ]

    first_due = utcnow() + timedelta(seconds=3)
    anchors: dict[str, datetime] = {}
    with session_scope(url) as session:
        for i in range(3):
            sync = add_sync(
                session, connection_id=cid, stream="items", schedule=f"every:{PERIOD:g}"
            )
            sync.next_run_at = first_due + timedelta(seconds=i / 3)  # not on a whole second
            anchors[sync.id] = sync.next_run_at
    sync_ids = list(anchors)

    time.sleep(max(0.0, (first_due - utcnow()).total_seconds()) + 60)
    ends: dict[str, datetime] = {}
    with session_scope(url) as session:
        for sync_id in sync_ids:
            paused = set_enabled(session, sync_id, False)
            assert paused.next_run_at is not None
            ends[sync_id] = paused.next_run_at
    wait_for(lambda: none_in_progress(url, sync_ids), 120, "the last runs to finish")
    time.sleep(2)  # a send claimed just before the pause is logged by now
    for beat in beats:
        beat.stop()
    logs = [beat.output() for beat in beats]

    sent_by_beat = [0, 0]
    for sync_id in sync_ids:
        claimed = (ends[sync_id] - anchors[sync_id]).total_seconds() / PERIOD
        assert claimed == int(claimed) and 11 <= claimed <= 14, (
            f"sync {sync_id}: next_run_at moved {claimed} periods in about 60 s"
        )
        sends = [log.count(f"sync {sync_id} is due") for log in logs]
        sent_by_beat = [a + b for a, b in zip(sent_by_beat, sends, strict=True)]
        assert sum(sends) == claimed, (
            f"sync {sync_id}: {claimed:.0f} periods claimed, {sends} sent by the two beats"
        )
        runs = runs_of(url, sync_id)
        periods = [(run.created_at - anchors[sync_id]).total_seconds() // PERIOD for run in runs]
        doubled = sorted({p for p in periods if periods.count(p) > 1})
        assert not doubled, (
            f"sync {sync_id}: two runs in period(s) {doubled}; runs created at "
            f"{[run.created_at.isoformat() for run in runs]}"
        )
        # A trigger meeting a run still in progress is skipped (CONTRACT.md); at most one here.
        assert claimed - 1 <= len(runs) <= claimed, (
            f"sync {sync_id}: {len(runs)} runs for {claimed:.0f} periods sent"
        )
        assert all(run.status == "succeeded" for run in runs), [
            (run.status, run.error) for run in runs
        ]
    print(f"periods sent by each beat: {sent_by_beat}")
    assert "Traceback" not in "".join(logs)


@pytest.mark.timeout(300)
def test_syncs_added_at_run_time_start_when_due_pause_and_resume_lost_runs(
    short_tmp: Path, processes: list[Any]
) -> None:
    """Embedded mode: one beat, one worker, the SQLite store written by all of them."""
    env = base_env(short_tmp / "home")
    try:
        box = start_sandbox(env, short_tmp, processes, f"--api-key={KEY}", "--records=40")
        cid = add_connection(env, "runtime", {"base_url": box.url}, f"api_key={KEY}")
        start_workers(env, short_tmp, processes, count=1, concurrency=2)
        beat = start_beat(env, short_tmp / "beat.log", processes)
        check_added_sync_starts_when_due_and_stops_when_paused(env, cid)
        lost = check_a_lost_run_is_sent_again_under_its_task_id(env, cid)
        assert re.search(rf"run {lost} of sync \S+ lost its worker", beat.output())
        purge = client_app(env).send_task(TASK_PURGE_HISTORY, queue=QUEUE_MAINTENANCE)
        answer = purge.get(timeout=60)
        assert answer == dict.fromkeys(TABLES, 0)
        assert "Traceback" not in beat.output()
    finally:
        run_cli(env, "down")


def syncs_status(env: dict[str, str], sync_id: str) -> dict[str, Any]:
    done = run_cli(env, "syncs", "status", sync_id, "--json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def check_added_sync_starts_when_due_and_stops_when_paused(env: dict[str, str], cid: str) -> None:
    added = run_cli(env, "syncs", "add", cid, "items", "--every", f"{PERIOD:g}s", "--json")
    assert added.returncode == 0, added.stderr
    view = json.loads(added.stdout)
    sync_id, due = view["id"], parse_stamp(view["next_run_at"])

    def started_runs() -> list[dict[str, Any]]:
        return [r for r in syncs_status(env, sync_id)["runs"] if r["started_at"]]

    first = wait_for(started_runs, 30, "the first run of a sync added while beat runs")[-1]
    late = (parse_stamp(first["started_at"]) - due).total_seconds()
    # A timed assertion on a shared machine, kept because it is the promise under test: beat
    # looks at the store every second, so a sync starts within seconds of being due.
    assert -0.5 <= late < 5, (
        f"the sync due at {due.isoformat()} started {late:.2f} s after it (want under 5 s; "
        "beat reads the store every second)"
    )
    wait_for(lambda: len(started_runs()) >= 2, 30, "the second period's run")

    paused = run_cli(env, "syncs", "pause", sync_id)
    assert paused.returncode == 0, paused.stderr
    time.sleep(PERIOD)  # a period claimed just before the pause may still start
    settled = syncs_status(env, sync_id)
    assert settled["enabled"] is False
    time.sleep(2 * PERIOD + 2)
    after = syncs_status(env, sync_id)
    assert [r["run_id"] for r in after["runs"]] == [r["run_id"] for r in settled["runs"]], (
        "a paused sync got a new run"
    )
    wait_for(
        lambda: all(r["status"] == "succeeded" for r in syncs_status(env, sync_id)["runs"]),
        60,
        "the sync's runs to succeed",
    )
    runs = syncs_status(env, sync_id)["runs"]
    assert len(runs) >= 2
    assert runs[-1]["records"] == 40 and runs[-1]["pages"] >= 1  # the first run read them all
    assert all(r["finished_at"] and r["error"] is None for r in runs)


def check_a_lost_run_is_sent_again_under_its_task_id(env: dict[str, str], cid: str) -> str:
    """A run whose holder stopped proving alive a lease ago is sent again by beat."""
    url = settings.load(env).database_url
    task_id = f"lost-{uuid.uuid4()}"
    stale = utcnow() - timedelta(seconds=120)
    with session_scope(url) as session:
        sync = add_sync(session, connection_id=cid, stream="items", schedule=None)
        run = SyncRun(
            sync_id=sync.id,
            status="running",
            full_refresh=False,
            task_id=task_id,
            holder="a-worker-that-died",
            heartbeat_at=stale,
            started_at=stale,
            created_at=stale,
        )
        session.add(run)
        session.flush()
        session.get_one(SyncDefinition, sync.id).active_run_id = run.id
        run_id = run.id
    answer = client_app(env).AsyncResult(task_id).get(timeout=90)
    assert answer["run_id"] == run_id and answer["records"] == 40, answer
    assert answer["resumed"] == 1, answer
    return run_id
