"""The ``spark:CONNECTION_ID:WORKFLOW_ID`` destination against the real automagik-spark 0.3.7.

A sandbox stream is synced to a spark workflow (an agent of the Agents source emulator, synced
into spark), through real workers, with ``--with input=...``:

- each record version runs the workflow exactly once (spark's task rows of the workflow and the
  agent's runs are counted), the template's text is the task row's input, and a later run with
  some records changed runs exactly the changed ones;
- with the workers SIGKILLed (their whole process group) while a run is in progress and calls
  are in flight at spark (a slow agent holds spark's run open), new workers finish the work: no
  input is in spark's task rows twice, and each record version either ran once or is in the dead
  letters as ``outcome_unknown``; every run of the sync completes.

Spark is shared by the tests of a process: each test filters by its own workflow.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery
from sqlalchemy import select

from spark_integrations.store import DeadLetter, SyncRun, session_scope
from tests.emulators.agents_source import AgentsSourceEmulator
from tests.integration.fleet import (
    FleetProcess,
    SandboxProcess,
    add_connection,
    broker_idle,
    client_app,
    run_cli,
    start_sandbox,
    start_workers,
    wait_for,
)
from tests.integration.providers import logged, start_emulator

pytestmark = [pytest.mark.server, pytest.mark.timeout(420)]

KEY = "sk-spark-dest-" + uuid.uuid4().hex
#: A template naming the record's version: each version of a record is an input of its own.
INPUT = "{name}: {id} v{version}"


@pytest.fixture
def env(redis_env: dict[str, str]) -> dict[str, str]:
    """A short lease (a killed run is taken over within seconds) and a short reclaim time (the
    calls a killed worker held come back within seconds)."""
    return {
        **redis_env,
        "SPARK_INTEGRATIONS_SYNC_LEASE": "4",
        "SPARK_INTEGRATIONS_RECLAIM_AFTER": "4",
    }


def served(box: SandboxProcess) -> dict[str, dict[str, Any]]:
    """Every item the sandbox serves now (one page: these tests keep fewer than 100)."""
    answer = requests.get(
        f"{box.url}/v1/items", params={"limit": 100}, headers={"X-API-Key": KEY}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return {str(r["id"]): r for r in answer.json()["data"]}


def input_text(task: dict[str, Any]) -> str:
    """A task row's input as it was sent: spark 0.3.7 lists it as the text stored, and answers
    a run with it parsed (a text that is no JSON as ``{"value": text}``)."""
    data = task["input_data"]
    if isinstance(data, dict) and set(data) == {"value"}:
        return str(data["value"])
    assert isinstance(data, str), data
    return data


def text_of(record: dict[str, Any]) -> str:
    return INPUT.format(**record)


class Setup:
    """A sandbox of ``records`` items, an agent of this test's own synced into spark, and the
    fleet's sandbox and spark connections with a sync of the items to that workflow."""

    def __init__(
        self,
        spark: Any,
        env: dict[str, str],
        tmp: Path,
        processes: list[Any],
        *,
        records: int,
        agent: str,
    ) -> None:
        self.spark, self.env = spark, env
        self.box = start_sandbox(env, tmp, processes, f"--records={records}", f"--api-key={KEY}")
        self.agents = start_emulator(AgentsSourceEmulator(slow_seconds=3.0), processes)
        self.agent = f"{agent}-{secrets.token_hex(3)}"
        self.agents.agents[self.agent] = "Answers with the record it was given."
        spark.add_source(self.agents.url, self.agents.api_key)
        self.workflow = str(spark.sync_flow(self.agent, self.agents.url)["id"])
        source = add_connection(env, "items", {"base_url": self.box.url}, f"api_key={KEY}")
        self.spark_conn = add_connection(
            env, "spark", {"base_url": spark.url}, f"api_key={spark.api_key}", provider="spark"
        )
        added = run_cli(
            env, "syncs", "add", source, "items",
            "--destination", f"spark:{self.spark_conn}:{self.workflow}",
            "--with", f"input={INPUT}", "--json",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        view = json.loads(added.stdout)
        assert view["destination_params"] == {"input": INPUT}, view
        self.sync_id = str(view["id"])

    def tasks(self) -> list[dict[str, Any]]:
        """Spark's task rows of this test's workflow, newest first."""
        return list(self.spark.tasks(workflow_id=self.workflow))

    def inputs(self) -> list[str]:
        """The input of each task row, as sent."""
        return [input_text(t) for t in self.tasks()]

    def agent_runs(self) -> list[str]:
        return [r["message"] for r in self.agents.runs if r["agent"] == self.agent]

    def run_sync(self, timeout: float = 180) -> dict[str, Any]:
        ran = run_cli(
            self.env, "syncs", "run", self.sync_id, "--wait", "--json", timeout=timeout
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        return dict(json.loads(ran.stdout))

    def calls_done(self, timeout: float = 180) -> None:
        wait_for(lambda: broker_idle(self.env, "integrations.calls"), timeout, "the spark runs")


def test_each_record_version_runs_the_workflow_once(
    real_spark: Any, env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    s = Setup(real_spark, env, short_tmp, processes, records=5, agent="dest")
    workers = start_workers(env, short_tmp, processes, concurrency=2)

    first = served(s.box)
    assert s.run_sync()["records"] == 5
    s.calls_done()
    expected = sorted(text_of(r) for r in first.values())
    assert sorted(s.inputs()) == expected
    assert sorted(s.agent_runs()) == expected
    assert all(t["status"] == "completed" for t in s.tasks())
    # The template's text is the task row's input, and what the workflow was given.
    one = first["item-000001"]
    row = next(t for t in s.tasks() if input_text(t) == text_of(one))
    assert row["input_data"] == f"{one['name']}: item-000001 v1"
    assert f"echo: {one['name']}: item-000001 v1" in str(row["output_data"])

    # Records change (the sandbox picks two at random: the same one, maybe): the next run runs
    # exactly those, as their new versions.
    s.box.control("update", count=2)
    changed = sorted(text_of(r) for r in served(s.box).values() if r["version"] > 1)
    assert changed
    assert s.run_sync()["records"] == len(changed)
    s.calls_done()
    assert sorted(s.inputs()) == sorted(expected + changed)
    assert len(s.agent_runs()) == 5 + len(changed)
    # Nothing changed: nothing runs.
    assert s.run_sync()["records"] == 0
    s.calls_done()
    assert len(s.tasks()) == 5 + len(changed)

    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        assert session.scalars(select(DeadLetter)).all() == []
    secret_values = (real_spark.api_key, KEY, env["SPARK_INTEGRATIONS_SECRET_KEYS"])
    assert not logged(workers, *secret_values), "a secret is in a worker's log"


def trigger(app: Celery, sync_id: str) -> None:
    app.send_task("integrations.sync", kwargs={"sync_id": sync_id}, queue="integrations.syncs")


def sync_runs(env: dict[str, str], sync_id: str) -> list[SyncRun]:
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        found = session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)).all()
        session.expunge_all()
        return list(found)


def killpg(proc: FleetProcess) -> None:
    """SIGKILL the worker's whole process group (main process and pool) at once."""
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.proc is not None
    proc.proc.wait(timeout=30)


def found_results(env: dict[str, str]) -> list[dict[str, Any]]:
    """The call results a look made (``"found": true``), from the result backend."""
    client = redis.Redis.from_url(env["SPARK_INTEGRATIONS_RESULT_BACKEND"])
    try:
        metas = [json.loads(client.get(k) or b"{}") for k in client.scan_iter("celery-task-meta-*")]
    finally:
        client.close()
    return [
        m["result"]
        for m in metas
        if m.get("status") == "SUCCESS"
        and isinstance(m.get("result"), dict)
        and m["result"].get("found") is True
    ]


def test_workers_killed_mid_sync_with_runs_in_flight_run_no_version_twice(
    real_spark: Any, env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    s = Setup(real_spark, env, short_tmp, processes, records=8, agent="slow")
    first = start_workers(env, short_tmp, processes, concurrency=2)[0]
    app = client_app(env)
    versions = {text_of(r) for r in served(s.box).values()}
    assert s.run_sync()["records"] == 8
    # The first run's calls are on their way; two of its records change, and the sync runs
    # again, its page held at the sandbox: a run in progress.
    s.box.control("update", count=2)
    changed = [r for r in served(s.box).values() if r["version"] > 1]
    versions |= {text_of(r) for r in changed}
    assert changed and len(versions) == 8 + len(changed)
    s.box.hold("api")
    trigger(app, s.sync_id)
    wait_for(lambda: s.box.control("hold", scopes=["api"])["held"] >= 1, 60, "the held page")
    # Spark holds a run open (the slow agent), with the fleet's request waiting for it.
    wait_for(lambda: s.agents.holding >= 1, 60, "a spark run in flight")
    killpg(first)
    s.box.release()

    workers = start_workers(env, short_tmp, processes, concurrency=2)

    # Triggered again as beat would: the killed run is taken over once its lease is stale.
    def both_succeeded() -> bool:
        if len([r for r in sync_runs(env, s.sync_id) if r.status == "succeeded"]) >= 2:
            return True
        trigger(app, s.sync_id)
        return False

    wait_for(both_succeeded, 120, "the killed run to be taken over and completed", interval=2)
    runs = sync_runs(env, s.sync_id)
    assert all(r.status == "succeeded" for r in runs), [(r.status, r.error) for r in runs]
    # A trigger still queued when the second run succeeded starts one more run, which finds
    # nothing new: runs that moved records are exactly the killed one (taken over) and the first.
    assert sorted(r.records for r in runs if r.records) == sorted([8, len(changed)])
    # The calls the killed worker held come back after the reclaim time; then all end.
    s.calls_done(timeout=240)

    inputs = s.inputs()
    assert not [t for t, n in Counter(inputs).items() if n > 1], "a version ran twice in spark"
    assert set(inputs) <= versions
    assert not [t for t, n in Counter(s.agent_runs()).items() if n > 1]
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        letters = [(d.kwargs, d.error) for d in session.scalars(select(DeadLetter)).all()]
    assert all(e.startswith("outcome_unknown") for _, e in letters), letters
    unknown = {k["params"]["input"] for k, _ in letters}
    # Every version ran once, or its outcome is unknown and it is in the dead letters.
    assert versions <= set(inputs) | unknown, sorted(versions - set(inputs) - unknown)
    # The call in flight at the kill was in doubt: it was looked for (and found), or ended as
    # outcome_unknown; it was not sent again blindly.
    found = found_results(env)
    assert found or unknown, "no call was in doubt after the kill"
    assert all(r["data"]["workflow_id"] == s.workflow for r in found)

    secret_values = (real_spark.api_key, KEY, env["SPARK_INTEGRATIONS_SECRET_KEYS"])
    assert not logged([first, *workers], *secret_values), "a secret is in a worker's log"
