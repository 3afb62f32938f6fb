"""``integrations.sync`` end to end: real workers, a real sandbox, the store on PostgreSQL.

Runs are triggered by name through the broker, as spark and beat send them. Workers are
SIGKILLed mid-run; what the store holds afterwards is compared with what the sandbox serves.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from celery import Celery
from sqlalchemy import func, select

from spark_integrations.sandbox import SandboxOptions, SandboxServer
from spark_integrations.store import Record, SyncCursor, SyncRun, session_scope
from spark_integrations.store.syncs import add_sync
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    broker_idle,
    client_app,
    run_cli,
    start_sandbox,
    start_workers,
    wait_for,
    worker,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

LEASE = "4"  # seconds: a killed worker's run is taken over quickly in these tests
KEY = "sk-sync-test"


@pytest.fixture
def env(redis_env: dict[str, str]) -> dict[str, str]:
    return {**redis_env, "SPARK_INTEGRATIONS_SYNC_LEASE": LEASE}


def database(env: dict[str, str]) -> str:
    return env["SPARK_INTEGRATIONS_DATABASE_URL"]


def new_sync(env: dict[str, str], connection_id: str, destination: str = "store") -> str:
    with session_scope(database(env)) as session:
        return add_sync(
            session,
            connection_id=connection_id,
            stream="items",
            schedule=None,
            destination=destination,
        ).id


def trigger(app: Celery, sync_id: str, *, full_refresh: bool = False) -> Any:
    queue = "integrations.backfills" if full_refresh else "integrations.syncs"
    return app.send_task(
        "integrations.sync", kwargs={"sync_id": sync_id, "full_refresh": full_refresh}, queue=queue
    )


def run_to_end(app: Celery, sync_id: str, timeout: float = 300) -> dict[str, Any]:
    """Trigger until a run completes (a trigger while one is in progress answers skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = trigger(app, sync_id).get(timeout=timeout)
        if not answer.get("skipped"):
            return dict(answer)
        time.sleep(0.5)
    raise AssertionError(f"no run of sync {sync_id} completed within {timeout:.0f} s")


def queue_worker(env: dict[str, str], log: Path, queues: str, name: str) -> FleetProcess:
    args = ["worker", f"--queues={queues}", "--concurrency=2", "--", "--without-mingle"]
    return FleetProcess(env, [*args, "--without-gossip", f"--hostname={name}@%h"], log)


def reach(app: Celery, env: dict[str, str], sync_id: str, pages: int, timeout: float = 240) -> None:
    """Wait for the run in progress to commit ``pages`` pages, triggering the sync every few
    seconds as spark or beat would: a trigger answers skipped while the run's holder is alive,
    and takes the run over once its lease went stale (its worker was killed)."""
    deadline = time.monotonic() + timeout
    last = 0.0
    while pages_running(env, sync_id) < pages:
        assert time.monotonic() < deadline, f"the run never reached page {pages}"
        if time.monotonic() - last > 3:
            trigger(app, sync_id)
            last = time.monotonic()
        time.sleep(0.1)


def held(box: Any) -> int:
    """Requests the sandbox holds now (its hold left as it is)."""
    return int(box.control("hold", scopes=["api"])["held"])


def pages_running(env: dict[str, str], sync_id: str) -> int:
    with session_scope(database(env)) as session:
        found = session.scalar(
            select(func.max(SyncRun.pages)).where(
                SyncRun.sync_id == sync_id, SyncRun.status == "running"
            )
        )
    return int(found or 0)


def stored(env: dict[str, str], sync_id: str) -> dict[str, dict[str, Any]]:
    with session_scope(database(env)) as session:
        rows = session.execute(select(Record.data).where(Record.sync_id == sync_id)).all()
    return {str(data["id"]): dict(data) for (data,) in rows}


def cursor_of(env: dict[str, str], sync_id: str) -> Any:
    with session_scope(database(env)) as session:
        row = session.get(SyncCursor, sync_id)
        return None if row is None else row.value


def served(base_url: str) -> dict[str, dict[str, Any]]:
    """Every item the sandbox serves now, read directly (no fleet code)."""
    items: dict[str, dict[str, Any]] = {}
    cursor = None
    with requests.Session() as http:
        http.headers["X-API-Key"] = KEY
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            answer = http.get(f"{base_url}/v1/items", params=params, timeout=30)
            if answer.status_code != 200:  # the test's own reads may meet the limit
                time.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            body = answer.json()
            items.update({str(r["id"]): r for r in body["data"]})
            cursor = body.get("next_cursor")
            if not cursor:
                return items


def test_a_sync_killed_three_times_ends_with_every_record_once(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """20,000 records; the worker SIGKILLed three times at random pages (twice the whole
    worker, once its pool process alone). The store ends with each record exactly once and the
    cursor at the end of the stream; the killed shares were taken over, not restarted."""
    box = start_sandbox(
        env, short_tmp, processes, "--records=20000", "--rate-limit=40", f"--api-key={KEY}"
    )
    cid = add_connection(env, "killed", {"base_url": box.url, "rate_limit": 40}, f"api_key={KEY}")
    sync_id = new_sync(env, cid)
    app = client_app(env)
    current = start_workers(env, short_tmp, processes)[0]
    first = trigger(app, sync_id)
    kill_points = sorted(random.Random().sample(range(8, 185), 3))
    kinds = ["whole", "pool", "whole"]
    for n, (point, kind) in enumerate(zip(kill_points, kinds, strict=True)):
        reach(app, env, sync_id, point)
        if kind == "pool":
            children = current.children()
            assert children, "the worker has no pool process to kill"
            for pid in children:
                os.kill(pid, signal.SIGKILL)
        else:
            current.kill_main()
            current = worker(env, short_tmp / f"worker-after-{n}.log", f"--hostname=k{n}@%h")
            processes.append(current)
            current.start().wait_ready()
    result = run_to_end(app, sync_id)
    served_429 = box.stats()["rate_limited"]
    records = stored(env, sync_id)
    truth = served(box.url)
    assert len(truth) == 20000
    assert set(records) == set(truth), "the store must hold exactly the sandbox's records"
    with session_scope(database(env)) as session:
        count = session.scalar(select(func.count()).where(Record.sync_id == sync_id))
        runs = session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)).all()
    assert count == 20000
    assert cursor_of(env, sync_id) == max(r["updated_at"] for r in truth.values())
    killed = [r for r in runs if r.pages >= kill_points[-1]]
    assert killed and killed[0].status == "succeeded" and killed[0].resumed >= 2, [
        (r.status, r.pages, r.resumed) for r in runs
    ]
    assert result["ok"] is True
    assert served_429 == 0
    # Its worker died; the run it started was finished by a takeover, and its waiter told.
    assert first.get(timeout=60)["run_id"] == killed[0].id


@pytest.fixture
def churning() -> Iterator[SandboxServer]:
    options = SandboxOptions(
        port=0, records=3000, api_key=KEY, churn=60, fault_rate=0.2, rate_limit=30, seed=11
    )
    with SandboxServer(options) as server:
        yield server


def test_faults_churn_and_a_rate_limit_lose_nothing_and_meet_no_429(
    env: dict[str, str], short_tmp: Path, processes: list[Any], churning: SandboxServer
) -> None:
    """Under 20% faults, records changing during the run and a 30/s limit, the run completes
    with every record, counting one retry per failed request (a slow answer is no failure);
    once the churn stops, one incremental run brings every record to its latest version. The
    sandbox served no 429: the fleet's budget waited instead."""
    # The faults the sandbox draws, by kind: the run meets none on about 1 run in 340 (32
    # pages, a 1/6 chance each of a fault that fails), so the count it reports is compared
    # with what it met, not with 0.
    kinds: list[str] = []
    faults = churning.sandbox.faults
    pick = faults.pick

    def counted(creates: bool) -> Any:
        fault = pick(creates)
        if fault is not None:
            kinds.append(fault.kind)
        return fault

    faults.pick = counted  # type: ignore[method-assign]
    cid = add_connection(
        env, "churn", {"base_url": churning.url, "rate_limit": 30}, f"api_key={KEY}"
    )
    sync_id = new_sync(env, cid)
    app = client_app(env)
    start_workers(env, short_tmp, processes)
    first = run_to_end(app, sync_id)
    assert first["records"] >= 3000
    assert first["retries"] == len([k for k in kinds if k != "slow"]), kinds
    assert len(stored(env, sync_id)) == 3000
    churn = churning.sandbox._churn
    assert churn is not None
    churn.stop()
    churn.join(timeout=10)
    requests.post(churning.url + "/_sandbox/faults", json={"rate": 0}, timeout=10)
    second = run_to_end(app, sync_id)
    stats = requests.get(churning.url + "/_sandbox/stats", timeout=10).json()
    truth = served(churning.url)
    records = stored(env, sync_id)
    assert {k: r["version"] for k, r in records.items()} == {
        k: r["version"] for k, r in truth.items()
    }
    assert second["records"] < 3000, "an incremental run reads only what changed"
    # Faults are drawn at random: the first run meets none about once in 1,260 runs (0.8^32),
    # so their count is checked against the run's retries above, not against 0 here.
    assert stats["items_updated"] > 0 and stats["faults_injected"] == len(kinds)
    assert stats["rate_limited"] == 0


def test_action_destination_sends_each_version_once_across_a_killed_worker(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """Each new record becomes one message; a worker killed mid-run and the page delivered
    again send no second message; a later run sends nothing for unchanged records."""
    # Two connections share the sandbox's one key: each at 10/s against its 40/s leaves
    # headroom for the burst each budget allows (at 20/s the two could meet the limit together).
    box = start_sandbox(
        env, short_tmp, processes, "--records=600", "--rate-limit=40", f"--api-key={KEY}"
    )
    source = add_connection(env, "src", {"base_url": box.url, "rate_limit": 10}, f"api_key={KEY}")
    target = add_connection(env, "dst", {"base_url": box.url, "rate_limit": 10}, f"api_key={KEY}")
    sync_id = new_sync(env, source, destination=f"action:{target}:create_message")
    app = client_app(env)
    # The calls run on a worker of their own; the one killed runs only the sync (a call held
    # by a killed worker would wait out the reclaim time, which is not the point here).
    calls = queue_worker(env, short_tmp / "calls.log", "integrations.calls", "c")
    syncs = queue_worker(env, short_tmp / "syncs-a.log", "integrations.syncs", "a")
    processes += [calls, syncs]
    for proc in (calls, syncs):
        proc.start().wait_ready()
    trigger(app, sync_id)
    reach(app, env, sync_id, 3)
    syncs.kill_main()
    syncs = queue_worker(env, short_tmp / "syncs-b.log", "integrations.syncs", "b")
    processes.append(syncs)
    syncs.start().wait_ready()
    run_to_end(app, sync_id)
    wait_for(lambda: box.stats()["messages_created"] >= 600, 240, "600 messages")
    again = run_to_end(app, sync_id)
    # Every call sent (a page delivered twice sends its calls twice) has ended: then count.
    wait_for(lambda: broker_idle(env, "integrations.calls"), 120, "the calls to end")
    messages = box.messages()
    texts = [m["text"] for m in messages]
    assert len(messages) == 600 and len(set(texts)) == 600, "one message per record"
    assert again["records"] == 0
    assert box.stats()["rate_limited"] == 0


def test_a_backfill_runs_beside_an_incremental_run_and_reset_rereads(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """A full refresh on integrations.backfills is not blocked by an incremental run in
    progress (a second incremental trigger is); neither moves the cursor back; `syncs reset`
    makes the next run read the whole stream."""
    box = start_sandbox(
        env, short_tmp, processes, "--records=3000", "--rate-limit=40", f"--api-key={KEY}"
    )
    cid = add_connection(env, "bf", {"base_url": box.url, "rate_limit": 40}, f"api_key={KEY}")
    sync_id = new_sync(env, cid)
    app = client_app(env)
    start_workers(env, short_tmp, processes, count=1, concurrency=3)
    # The runs are kept in progress by holding their requests at the sandbox: a run that
    # finished before the second trigger arrived would let that trigger start a run of its own.
    box.hold("api")
    incremental = trigger(app, sync_id)
    wait_for(lambda: held(box) >= 1, 60, "the incremental run's first page, held")
    skipped = trigger(app, sync_id).get(timeout=60)
    backfilling = trigger(app, sync_id, full_refresh=True)
    wait_for(lambda: held(box) >= 2, 60, "the backfill's first page, held beside it")
    box.release()
    backfill = backfilling.get(timeout=300)
    done = incremental.get(timeout=300)
    assert skipped["skipped"] is True and "in progress" in skipped["reason"]
    assert not backfill.get("skipped") and backfill["full_refresh"] is True
    assert backfill["pages"] == 30 and done["pages"] == 30
    assert box.stats()["rate_limited"] == 0
    end = max(r["updated_at"] for r in served(box.url).values())
    assert cursor_of(env, sync_id) == end
    assert len(stored(env, sync_id)) == 3000
    small = run_to_end(app, sync_id)
    assert small["pages"] == 1
    reset = run_cli(env, "syncs", "reset", sync_id)
    assert reset.returncode == 0, reset.stderr
    assert cursor_of(env, sync_id) is None
    full = run_to_end(app, sync_id)
    assert full["pages"] == 30 and full["records"] == 0  # read again, nothing rewritten
    assert cursor_of(env, sync_id) == end


def test_bad_kwargs_fail_with_one_sentence(
    env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    app = client_app(env)
    start_workers(env, short_tmp, processes)
    cases = [
        ({"sync_id": "no-such-sync"}, "no sync"),
        ({"sync_id": 7}, "sync_id must be"),
        ({"sync_id": "x", "full_refresh": "yes"}, "full_refresh must be"),
        ({"sync_id": "x", "colour": 1}, "takes no argument 'colour'"),
    ]
    for kwargs, expected in cases:
        result = app.send_task("integrations.sync", kwargs=kwargs, queue="integrations.syncs")
        with pytest.raises(Exception) as failed:
            result.get(timeout=60)
        assert expected in str(failed.value)
        assert "Traceback" not in str(failed.value)
