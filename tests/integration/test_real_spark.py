"""The real automagik-spark the other spark tests drive: it starts, takes an Automagik Agents
source, syncs one of its agents into a workflow, and records a run's outcome."""

from __future__ import annotations

from typing import Any

from tests.emulators.agents_source import AgentsSourceEmulator


def test_spark_runs_a_workflow_of_an_agents_source(real_spark: Any) -> None:
    with AgentsSourceEmulator().start() as agents:
        real_spark.add_source(agents.url, agents.api_key)
        remote = real_spark.api("GET", "/workflows/remote")
        assert {"echo", "fail"} <= {flow["id"] for flow in remote}
        echo = real_spark.sync_flow("echo", agents.url)
        fail = real_spark.sync_flow("fail", agents.url)

        done = real_spark.run_workflow(echo["id"], "hello there")
        assert done["status"] == "completed"
        assert done["input_data"] == {"value": "hello there"}
        assert agents.runs[-1]["message"] == "hello there"

        failed = real_spark.run_workflow(fail["id"], '{"n": 1}')
        assert failed["status"] == "failed"
        assert failed["input_data"] == {"n": 1}
        assert "500" in failed["error"]

        listed = real_spark.tasks()
        # Newest first, as spark 0.3.7 lists them.
        assert [t["id"] for t in listed[:2]] == [failed["id"], done["id"]]
