"""Beat's store scheduler with real processes: beats, a worker, the sandbox and the store.

Two beats on one PostgreSQL store send each due period of a sync once; a sync added while beat
runs starts when due; a paused sync stops; a run whose worker was lost is sent again under its
task id; the daily purge answers through a real worker.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select, text

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
    stop_embedded_redis,
    wait_for,
)

KEY = "sk-scheduler-test"
PERIOD = 5.0


def parse_stamp(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


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


# A claim log for the two-beats test, installed in its throwaway database: every UPDATE that
# claims a period (it sets last_scheduled_at), with the rows it changed. A claim that changed no
# row is a beat that read a due time and lost the compare-and-set to the other: the race.
CLAIM_LOG = (
    "CREATE TABLE test_claim_log (rows integer NOT NULL)",
    """CREATE FUNCTION test_log_claim() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF position('last_scheduled_at' in lower(current_query())) > 0 THEN
        INSERT INTO test_claim_log SELECT count(*) FROM new_rows;
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER test_claims AFTER UPDATE ON sync_definitions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION test_log_claim()""",
)
TWO_BEATS_PERIOD = 3.0
TWO_BEATS_PERIODS = 12


def claim_log(url: str) -> list[int]:
    """Rows changed by each claim statement so far."""
    with session_scope(url) as session:
        return list(session.scalars(text("SELECT rows FROM test_claim_log")))


def skipped_triggers(redis_url: str) -> Counter[str]:
    """Per sync, the triggers that were answered "skipped" (a run still in progress)."""
    client = redis.Redis.from_url(redis_url)
    found: Counter[str] = Counter()
    try:
        for key in client.scan_iter(match="celery-task-meta-*"):
            meta = json.loads(client.get(key) or b"{}")
            result = meta.get("result")
            if isinstance(result, dict) and result.get("skipped"):
                found[str(result["sync_id"])] += 1
    finally:
        client.close()
    return found


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_beats_send_each_period_of_a_sync_once(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Two beats, one store, three syncs due every 3 s for 12 periods: each period sent once.

    Both beats look at the store on the same whole seconds of the clock, so they race for the
    periods of the three syncs; the store's claim log shows claims lost to the other beat (the
    race happened) and no period claimed twice. A sync's ``next_run_at`` moves on by exactly one
    period per claim, so the periods claimed are known exactly from where it ends; the beats'
    logs say how often each sync was sent, and the store and the results what came of each send:
    a run, or a trigger skipped while the previous run was still going.
    """
    env = redis_env
    url = env["SPARK_INTEGRATIONS_DATABASE_URL"]
    period = TWO_BEATS_PERIOD
    with session_scope(url) as session:
        for statement in CLAIM_LOG:
            session.connection().exec_driver_sql(statement)
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

    first_due = utcnow() + timedelta(seconds=2)
    anchors: dict[str, datetime] = {}
    with session_scope(url) as session:
        for i in range(3):
            sync = add_sync(
                session, connection_id=cid, stream="items", schedule=f"every:{period:g}"
            )
            sync.next_run_at = first_due + timedelta(seconds=i / 3)  # not on a whole second
            anchors[sync.id] = sync.next_run_at
    sync_ids = list(anchors)

    def periods_claimed(sync_id: str) -> float:
        with session_scope(url) as session:
            sync = session.get_one(SyncDefinition, sync_id)
            assert sync.next_run_at is not None
            return (sync.next_run_at - anchors[sync_id]).total_seconds() / period

    wait_for(
        lambda: all(periods_claimed(s) >= TWO_BEATS_PERIODS for s in sync_ids),
        TWO_BEATS_PERIODS * period * 3 + 60,
        f"{TWO_BEATS_PERIODS} periods of each sync to be claimed",
    )
    ends: dict[str, datetime] = {}
    with session_scope(url) as session:
        for sync_id in sync_ids:
            paused = set_enabled(session, sync_id, False)
            assert paused.next_run_at is not None
            ends[sync_id] = paused.next_run_at
    claimed = {s: (ends[s] - anchors[s]).total_seconds() / period for s in sync_ids}
    total = sum(claimed.values())

    def sends() -> list[str]:
        return [beat.output() for beat in beats]

    # Every claim is logged by its beat once sent: wait for the last sends to be logged.
    wait_for(lambda: sum(log.count("is due") for log in sends()) >= total, 60, "the last sends")
    wait_for(lambda: none_in_progress(url, sync_ids), 120, "the last runs to finish")
    for beat in beats:
        beat.stop()
    logs = sends()
    skipped = skipped_triggers(env["SPARK_INTEGRATIONS_REDIS_URL"])

    claims = claim_log(url)
    assert sum(claims) == total, (sum(claims), total)  # every claim is one period of one sync
    assert all(rows in (0, 1) for rows in claims), claims
    assert claims.count(0) >= 1, (
        "no beat ever lost a claim to the other: the test did not make them race "
        f"({len(claims)} claim statements)"
    )
    sent_by_beat = [0, 0]
    for sync_id in sync_ids:
        assert claimed[sync_id] == int(claimed[sync_id]), claimed
        assert claimed[sync_id] >= TWO_BEATS_PERIODS
        sent = [log.count(f"sync {sync_id} is due") for log in logs]
        sent_by_beat = [a + b for a, b in zip(sent_by_beat, sent, strict=True)]
        assert sum(sent) == claimed[sync_id], (
            f"sync {sync_id}: {claimed[sync_id]:.0f} periods claimed, {sent} sent by the beats"
        )
        runs = runs_of(url, sync_id)
        starts = [(run.created_at - anchors[sync_id]).total_seconds() // period for run in runs]
        doubled = sorted({p for p in starts if starts.count(p) > 1})
        assert not doubled, (
            f"sync {sync_id}: two runs in period(s) {doubled}; runs created at "
            f"{[run.created_at.isoformat() for run in runs]}"
        )
        # Each send became a run, or was skipped because the last run was still going.
        assert len(runs) + skipped[sync_id] == claimed[sync_id], (
            len(runs),
            skipped[sync_id],
            claimed[sync_id],
        )
        assert all(run.status == "succeeded" for run in runs), [
            (run.status, run.error) for run in runs
        ]
    print(f"periods sent by each beat: {sent_by_beat}; claims lost: {claims.count(0)}")
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
        stop_embedded_redis(env)


def syncs_status(env: dict[str, str], sync_id: str) -> dict[str, Any]:
    done = run_cli(env, "syncs", "status", sync_id, "--json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def check_added_sync_starts_when_due_and_stops_when_paused(env: dict[str, str], cid: str) -> None:
    """A sync added while beat runs starts once due (never before); paused, it gets no new run
    while a control sync on the same schedule shows beat going on through several periods."""

    def add(name: str) -> tuple[str, datetime]:
        added = run_cli(env, "syncs", "add", cid, "items", "--every", f"{PERIOD:g}s", "--json")
        assert added.returncode == 0, (name, added.stderr)
        view = json.loads(added.stdout)
        return view["id"], parse_stamp(view["next_run_at"])

    sync_id, due = add("paused")
    control, _ = add("control")

    def started_runs(of: str) -> list[dict[str, Any]]:
        return [r for r in syncs_status(env, of)["runs"] if r["started_at"]]

    first = wait_for(lambda: started_runs(sync_id), 60, "the first run of a sync added")[-1]
    # Not before it was due (how soon after is a benchmark's business, not a test's).
    assert parse_stamp(first["started_at"]) >= due, (first["started_at"], due.isoformat())
    wait_for(lambda: len(started_runs(sync_id)) >= 2, 60, "the second period's run")

    paused = run_cli(env, "syncs", "pause", sync_id)
    assert paused.returncode == 0, paused.stderr
    # A period claimed just before the pause may still start; once the control sync has run
    # twice more (both claimed after the pause, and queued behind anything sent before it), it
    # has. Then two more periods of the control sync: beat went on, the paused sync got nothing.
    base = len(started_runs(control))
    wait_for(lambda: len(started_runs(control)) >= base + 2, 60, "two more control runs")
    settled = syncs_status(env, sync_id)
    assert settled["enabled"] is False
    wait_for(lambda: len(started_runs(control)) >= base + 4, 60, "two further control runs")
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
    stopped = run_cli(env, "syncs", "pause", control)
    assert stopped.returncode == 0, stopped.stderr


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
