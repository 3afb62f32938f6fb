"""The real automagik-spark 0.3.7 uses the fleet as an Automagik Agents source, unchanged.

A real gateway (its PUBLIC_URL set, so spark reaches it on loopback), real workers and the
sandbox provider; spark registers ``PUBLIC_URL/spark`` with the key ``expose key`` printed,
lists what is exposed, syncs flows into workflows, runs them through its own API and on its own
schedule (its worker and beat), and records each outcome in its task rows.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    client_app,
    free_port,
    run_cli,
    start_sandbox,
    start_workers,
    wait_for,
)
from tests.integration.real_spark import RealSpark

pytestmark = pytest.mark.server

SANDBOX_KEY = "sandbox-key-for-spark-source"
#: The gateway's wait in these tests: inside spark's 5 s with room for a loaded machine.
WAIT = "3"


class Fleet:
    """A gateway, workers and a sandbox on one server-mode environment."""

    def __init__(self, env: dict[str, str], tmp: Path, processes: list[Any]) -> None:
        port = free_port()
        self.public = f"http://127.0.0.1:{port}"
        self.env = {
            **env,
            "SPARK_INTEGRATIONS_PUBLIC_URL": self.public,
            "SPARK_INTEGRATIONS_SPARK_WAIT": WAIT,
        }
        self.source_url = self.public + "/spark"
        self.gateway = FleetProcess(self.env, ["gateway", f"--port={port}"], tmp / "gateway.log")
        processes.append(self.gateway)
        self.gateway.start().wait_ready("gateway listening on")
        self.workers = start_workers(self.env, tmp, processes)
        self.sandbox = start_sandbox(
            self.env, tmp, processes, f"--api-key={SANDBOX_KEY}", "--records=20"
        )
        self.cid = add_connection(
            self.env, "box", {"base_url": self.sandbox.url}, f"api_key={SANDBOX_KEY}"
        )

    def cli(self, *args: str) -> Any:
        done = run_cli(self.env, *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if "--json" in args else done.stdout

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sandbox.messages()]

    def logs(self) -> str:
        return self.gateway.output() + "".join(w.output() for w in self.workers)


@pytest.fixture
def fleet(redis_env: dict[str, str], short_tmp: Path, processes: list[Any]) -> Fleet:
    return Fleet(redis_env, short_tmp, processes)


def register(spark: RealSpark, url: str, key: str) -> dict[str, Any]:
    """Register the fleet's source in spark. Spark is shared by the tests of a process and keeps
    one source per URL: a gateway of an earlier test may have had this port, so a source left at
    this URL is given the new key (PATCH, as an operator rotating the key does)."""
    left = [s for s in spark.api("GET", "/sources/") if s["url"] == url]
    if left:
        return dict(spark.api("PATCH", f"/sources/{left[0]['id']}", json={"api_key": key}))
    return dict(spark.add_source(url, key))


def flow(spark: RealSpark, name: str) -> dict[str, Any]:
    [found] = [f for f in spark.api("GET", "/workflows/remote") if f["id"] == name]
    return dict(found)


def test_spark_registers_lists_syncs_and_runs_exposed_actions_and_syncs(
    real_spark: RealSpark, fleet: Fleet
) -> None:
    key = fleet.cli("expose", "key", "--json")["key"]

    # A wrong key: spark's own validation of the source fails (our /health answers 401).
    wrong = real_spark.session.post(
        f"{real_spark.url}/api/v1/sources/",
        json={"source_type": "automagik-agents", "url": fleet.source_url, "api_key": "nope"},
        timeout=60,
    )
    assert wrong.status_code == 400, wrong.text
    assert "401" in wrong.json()["detail"]
    source = register(real_spark, fleet.source_url, key)
    assert source["status"] == "active"

    name = f"send-{uuid.uuid4().hex[:8]}"
    fleet.cli("expose", "action", fleet.cid, "create_message", "--name", name)
    listed = flow(real_spark, name)
    assert "create_message" in listed["description"]
    assert "text for 'text'" in listed["description"]
    workflow = real_spark.sync_flow(name, fleet.source_url)

    text = f"hello from spark {uuid.uuid4().hex}"
    task = real_spark.run_workflow(workflow["id"], text)
    assert task["status"] == "completed", task
    output = task["output_data"]
    assert output["ok"] is True and output["data"]["text"] == text
    assert fleet.texts().count(text) == 1

    # A JSON object is the action's params; one the action does not take is a failed task.
    as_params = json.dumps({"text": f"as params {uuid.uuid4().hex}"})
    assert real_spark.run_workflow(workflow["id"], as_params)["status"] == "completed"
    assert fleet.texts().count(json.loads(as_params)["text"]) == 1
    refused = real_spark.run_workflow(workflow["id"], '{"colour": "red"}')
    assert refused["status"] == "failed" and "422" in refused["error"], refused

    # A failed call: spark records a failed task (its error holds the status line only).
    missing = f"get-{uuid.uuid4().hex[:8]}"
    fleet.cli("expose", "action", fleet.cid, "get_message", "--name", missing)
    get_flow = real_spark.sync_flow(missing, fleet.source_url)
    failed = real_spark.run_workflow(get_flow["id"], "no-such-message")
    assert failed["status"] == "failed" and "502" in failed["error"], failed

    # A sync exposure runs integrations.sync.
    sync = fleet.cli("syncs", "add", fleet.cid, "items", "--json")
    sync_name = f"items-{uuid.uuid4().hex[:8]}"
    fleet.cli("expose", "sync", sync["id"], "--name", sync_name)
    assert "items" in flow(real_spark, sync_name)["description"]
    synced = real_spark.run_workflow(real_spark.sync_flow(sync_name, fleet.source_url)["id"], "")
    assert synced["status"] == "completed", synced
    if "value" not in synced["output_data"]:  # else slower than the wait on a busy machine
        assert synced["output_data"]["sync_id"] == sync["id"]
        assert synced["output_data"]["records"] == 20

    def sync_ran() -> Any:
        runs = fleet.cli("syncs", "status", sync["id"], "--json")["runs"]
        return runs if runs and runs[0]["status"] == "succeeded" else None

    runs = wait_for(sync_ran, 60, "the sync spark ran to succeed")
    assert len(runs) == 1 and runs[0]["records"] == 20

    # Slower than the wait: spark records the run completed, with the task id; the task goes on.
    fleet.sandbox.hold("api")
    late = f"late {uuid.uuid4().hex}"
    try:
        held = real_spark.run_workflow(workflow["id"], late)
    finally:
        fleet.sandbox.release()
    assert held["status"] == "completed", held
    message = held["output_data"]["value"]
    assert message.startswith("task ") and "its outcome will be in the fleet's history" in message
    task_id = message.split()[1]
    result = client_app(fleet.env).AsyncResult(task_id).get(timeout=120)
    assert result["ok"] is True and result["data"]["text"] == late
    assert fleet.texts().count(late) == 1

    # A new key: spark's runs are refused until its source has it (PATCH, as docs say).
    newer = fleet.cli("expose", "key", "--json")["key"]
    stale = real_spark.run_workflow(workflow["id"], f"stale key {uuid.uuid4().hex}")
    assert stale["status"] == "failed" and "401" in stale["error"], stale
    real_spark.api("PATCH", f"/sources/{source['id']}", json={"api_key": newer})
    rotated = f"rotated key {uuid.uuid4().hex}"
    assert real_spark.run_workflow(workflow["id"], rotated)["status"] == "completed"
    assert fleet.texts().count(rotated) == 1

    # Neither the fleet's keys nor spark's own key is in a gateway or worker log.
    logs = fleet.logs()
    assert key not in logs and newer not in logs and real_spark.api_key not in logs
    assert "x-api-key" not in logs.lower()


@pytest.mark.slow
def test_a_spark_schedule_runs_an_exposed_action(real_spark: RealSpark, fleet: Fleet) -> None:
    """Spark's own beat and worker run the workflow on an interval. Spark 0.3.7 allows
    minutes at the shortest ('1m'), and its beat first fires one interval after it reads the
    schedule: this test takes about a minute."""
    key = fleet.cli("expose", "key", "--json")["key"]
    register(real_spark, fleet.source_url, key)
    name = f"every-{uuid.uuid4().hex[:8]}"
    fleet.cli("expose", "action", fleet.cid, "create_message", "--name", name)
    workflow = real_spark.sync_flow(name, fleet.source_url)
    text = f"scheduled {uuid.uuid4().hex}"
    schedule = real_spark.api(
        "POST",
        "/schedules",
        json={
            "workflow_id": workflow["id"],
            "schedule_type": "interval",
            "schedule_expr": "1m",
            "input_value": text,
        },
    )
    try:
        real_spark.start_scheduling()
        wait_for(lambda: text in fleet.texts(), 180, "spark's schedule to run the action")

        def completed() -> list[dict[str, Any]]:
            tasks = real_spark.tasks(workflow_id=workflow["id"])
            return [t for t in tasks if t["status"] == "completed"]

        [done, *_] = wait_for(completed, 60, "spark to record the scheduled run")
        # Spark's worker stores the source's whole answer as JSON text; its result is ours.
        answer = json.loads(done["output_data"])
        assert json.loads(answer["result"])["data"]["text"] == text
    finally:
        # Spark (shared by the session) must not go on calling a gateway that is gone.
        real_spark.api("DELETE", f"/schedules/{schedule['id']}")
    assert fleet.texts().count(text) >= 1
    assert key not in fleet.logs()


def test_without_a_key_every_spark_request_is_refused(fleet: Fleet) -> None:
    answer = requests.get(fleet.source_url + "/health", headers={"x-api-key": "x"}, timeout=30)
    assert answer.status_code == 401
    assert "expose key" in answer.json()["detail"]
