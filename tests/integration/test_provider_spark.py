"""The ``spark`` connector end to end: real workers against the real automagik-spark 0.3.7 (the
session fixture ``real_spark``) and an Automagik Agents source on loopback (tests/emulators).

Spark's database is shared by the tests of a process: each test makes its own workflows (agents
of unique names on its own source) and reads spark's task rows through them alone.

- A sync of the workflow's task runs (a bare array, one streamed request a run) moves exactly
  spark's rows, ids and ``updated_at`` as spark lists them; after three new runs, the next run
  moves exactly those three; a failed task that spark retries (its own CLI, ``tasks retry``) and
  that fails again is a new version of its row, moved by the next run.
- ``run_workflow`` through ``integrations.call`` makes a spark task holding the input, which the
  connector's look (for a run whose answer was lost) finds in spark's listing; an
  unknown workflow fails at once with spark's detail in one sentence, in a dead letter.
- The spark API key shows in no worker log, result or dead letter.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from spark_integrations.connectors import get_connector
from tests.emulators.agents_source import AgentsSourceEmulator
from tests.integration.fleet import add_connection, dead_letters
from tests.integration.providers import add_sync, call, logged, start_emulator, start_fleet
from tests.integration.test_syncs import cursor_of, run_to_end, stored

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]


def add_workflow(spark: Any, agents: AgentsSourceEmulator, kind: str) -> str:
    """A spark workflow of a new agent of ``agents`` (a unique name: spark keys workflows on
    their remote flow's id across every source)."""
    name = f"h1-{kind}-{uuid.uuid4().hex[:8]}"
    agents.agents[name] = f"{kind} agent of a spark connector test"
    return str(spark.sync_flow(name, agents.url)["id"])


def add_spark(env: dict[str, str], spark: Any) -> str:
    name = f"spark-{uuid.uuid4().hex[:6]}"
    return add_connection(env, name, {"base_url": spark.url}, f"api_key={spark.api_key}",
                          provider="spark")  # fmt: skip


def listed(spark: Any, workflow_id: str) -> dict[str, str]:
    """Spark's own listing of a workflow's task rows: id -> updated_at."""
    return {t["id"]: t["updated_at"] for t in spark.tasks(workflow_id=workflow_id)}


def instant(stamp: str) -> datetime:
    """An ``updated_at`` of spark's as an instant: as text, ``...:05Z`` sorts after
    ``...:05.3Z`` (pydantic leaves out a zero fraction)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def moved(env: dict[str, str], sync_id: str) -> dict[str, str]:
    return {key: row["updated_at"] for key, row in stored(env, sync_id).items()}


def retry_in_spark(spark: Any, task_id: str) -> None:
    """``automagik-spark tasks retry ID``: spark's own retry, run where spark runs."""
    cli = Path(spark.python).parent / "automagik-spark"
    done = subprocess.run(
        [str(cli), "tasks", "retry", task_id],
        env=spark.env, cwd=spark.workdir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_task_runs_sync_exactly_and_incrementally_and_a_retry_is_a_new_version(
    real_spark: Any, redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    agents = start_emulator(AgentsSourceEmulator(), processes)
    real_spark.add_source(agents.url, agents.api_key)
    echo = add_workflow(real_spark, agents, "echo")
    gone = add_workflow(real_spark, agents, "gone")
    for n in range(5):
        assert real_spark.run_workflow(echo, f"run {n}")["status"] == "completed"
    del agents.agents[next(n for n in agents.agents if n.startswith("h1-gone-"))]
    failed = [real_spark.run_workflow(gone, f"doomed {n}") for n in range(2)]
    assert {t["status"] for t in failed} == {"failed"}

    cid = add_spark(redis_env, real_spark)
    echo_sync = str(add_sync(redis_env, cid, "tasks", {"workflow_id": echo})["id"])
    gone_sync = str(add_sync(redis_env, cid, "tasks", {"workflow_id": gone})["id"])
    workers, app = start_fleet(redis_env, short_tmp, processes, concurrency=2)

    first = run_to_end(app, echo_sync)
    assert first["records"] == 5, first
    assert moved(redis_env, echo_sync) == listed(real_spark, echo)
    assert cursor_of(redis_env, echo_sync) == max(listed(real_spark, echo).values(), key=instant)

    before = set(moved(redis_env, echo_sync))
    new = {real_spark.run_workflow(echo, f"later {n}")["id"] for n in range(3)}
    second = run_to_end(app, echo_sync)
    assert second["records"] == 3, second
    assert set(moved(redis_env, echo_sync)) - before == new
    assert moved(redis_env, echo_sync) == listed(real_spark, echo)

    # Nothing changed: nothing moves.
    assert run_to_end(app, echo_sync)["records"] == 0

    assert run_to_end(app, gone_sync)["records"] == 2
    retried = failed[0]["id"]
    old = stored(redis_env, gone_sync)[retried]
    retry_in_spark(real_spark, retried)
    again = run_to_end(app, gone_sync)
    assert again["records"] == 1, again
    row = stored(redis_env, gone_sync)[retried]
    assert (row["status"], row["tries"]) == ("failed", old["tries"] + 1)
    assert instant(row["updated_at"]) > instant(old["updated_at"])
    assert moved(redis_env, gone_sync) == listed(real_spark, gone)

    assert logged(workers, real_spark.api_key) == []


def test_run_workflow_through_a_call_and_an_unknown_workflow_fails_cleanly(
    real_spark: Any, redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    agents = start_emulator(AgentsSourceEmulator(), processes)
    real_spark.add_source(agents.url, agents.api_key)
    echo = add_workflow(real_spark, agents, "echo")
    cid = add_spark(redis_env, real_spark)
    workers, app = start_fleet(redis_env, short_tmp, processes, concurrency=2)

    text = f'{{"issue": "{uuid.uuid4().hex}"}}'
    ok, result = call(app, cid, "run_workflow", {"workflow_id": echo, "input": text})
    assert ok, result
    task = result["data"]
    assert (task["status"], task["workflow_id"]) == ("completed", echo)
    rows = real_spark.tasks(workflow_id=echo)
    assert [t["id"] for t in rows] == [task["id"]]
    assert rows[0]["input_data"] == text  # as spark 0.3.7 lists it: the text it was given
    assert agents.runs[-1]["message"] == text

    # The look a lost answer would lead to finds that run in spark's own rows, and no other.
    client = get_connector("spark")({"base_url": real_spark.url}, {"api_key": real_spark.api_key})
    run = client.get_action("run_workflow")
    since = time.time() - 60
    found = client.look(run, {"workflow_id": echo, "input": text}, since)
    assert (found.outcome, found.data["id"]) == ("found", task["id"])
    assert client.look(run, {"workflow_id": echo, "input": "other"}, since).outcome == "absent"
    assert client.look(run, {"workflow_id": echo, "input": text}, time.time() + 60).outcome == (
        "absent"
    )

    unknown = str(uuid.uuid4())
    ok, error = call(app, cid, "run_workflow", {"workflow_id": unknown, "input": "x"})
    assert not ok
    assert f"spark refused the request (Workflow {unknown} not found)." in error
    letters = [d for d in dead_letters(redis_env) if d["connection_id"] == cid]
    assert len(letters) == 1 and letters[0]["attempts"] == 1
    assert f"Workflow {unknown} not found" in letters[0]["error"]
    assert "\n" not in letters[0]["error"]

    secret = real_spark.api_key
    assert secret not in str(result) and secret not in str(error) and secret not in str(letters)
    assert logged(workers, secret) == []
