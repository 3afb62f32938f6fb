"""An event routed to a spark workflow runs it once, against the real automagik-spark 0.3.7.

The workflow is an agent of the Agents source emulator synced into spark. The event's task is
sent twice by name; spark's task rows of the workflow and the agent's runs show one run, whose
input is the route's template rendered from the event's payload. A second event with no input
template runs the workflow with the payload as compact JSON.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from spark_integrations.store import WebhookEvent, session_scope
from spark_integrations.store.types import utcnow
from tests.integration.fleet import (
    add_connection,
    broker_idle,
    client_app,
    dead_letters,
    run_cli,
    start_workers,
    wait_for,
)
from tests.integration.providers import logged
from tests.integration.real_spark import agent_workflow

pytestmark = [pytest.mark.server, pytest.mark.timeout(420)]

SECRET = "whsec_" + uuid.uuid4().hex


def route(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = run_cli(env, "webhooks", "route", "add", *args, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def store_event(env: dict[str, str], connection_id: str, payload: dict[str, Any]) -> str:
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        event = WebhookEvent(
            provider="github", connection_id=connection_id, delivery_id=str(uuid.uuid4()),
            event_type=f"issues.{payload['action']}", payload=payload, enqueued_at=utcnow(),
        )  # fmt: skip
        session.add(event)
        session.flush()
        return event.id


def process(app: Any, event_id: str) -> Any:
    """Send ``integrations.process_webhook`` by name, as the intake does."""
    return app.send_task(
        "integrations.process_webhook", kwargs={"event_id": event_id}, queue="integrations.webhooks"
    )


def input_text(task: dict[str, Any]) -> str:
    """A task row's input as sent (spark 0.3.7 lists the text stored)."""
    data = task["input_data"]
    if isinstance(data, dict) and set(data) == {"value"}:
        return str(data["value"])
    return data if isinstance(data, str) else json.dumps(data)


def test_an_event_routed_to_spark_runs_the_workflow_once(
    real_spark: Any, redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = redis_env
    made = agent_workflow(
        real_spark, env, processes, prefix="hook",
        description="Answers with the event it was given.", slow_seconds=1.0,
    )  # fmt: skip
    agents, agent, workflow = made.agents, made.agent, made.workflow_id
    # A GitHub connection receiving issue events (nothing calls GitHub here).
    github = add_connection(
        env, "gh", {}, "token=ghp-unused", f"webhook_secret={SECRET}", provider="github"
    )
    templated = route(
        env, github, "issues.opened", "--spark", made.target,
        "--with", "input=New issue #{issue.number}: {issue.title} in {repository.full_name}",
    )  # fmt: skip
    plain = route(env, github, "issues.closed", "--spark", made.target)
    workers = start_workers(env, short_tmp, processes, concurrency=2)
    app = client_app(env)

    opened = {
        "action": "opened",
        "issue": {"number": 42, "title": "Crash on save"},
        "repository": {"full_name": "acme/app"},
    }
    event_id = store_event(env, github, opened)
    # The task delivered twice: one processes the event, the other answers the same.
    sent = [process(app, event_id), process(app, event_id)]
    answers = [s.get(timeout=180) for s in sent]
    assert answers[0] == answers[1]
    (run,) = answers[0]["runs"]
    assert (run["kind"], run["route_id"], run["workflow_id"]) == (
        "spark",
        templated["id"],
        workflow,
    )
    called = app.AsyncResult(run["task_id"]).get(timeout=180)
    assert called["ok"] is True and called["data"]["workflow_id"] == workflow

    closed = {**opened, "action": "closed"}
    closed_id = store_event(env, github, closed)
    closed_answer = process(app, closed_id).get(timeout=180)
    assert closed_answer["runs"][0]["route_id"] == plain["id"]
    app.AsyncResult(closed_answer["runs"][0]["task_id"]).get(timeout=180)
    wait_for(lambda: broker_idle(env, "integrations.calls", "integrations.webhooks"), 120, "idle")

    expected = [
        "New issue #42: Crash on save in acme/app",
        json.dumps(closed, sort_keys=True, separators=(",", ":")),
    ]
    tasks = real_spark.tasks(workflow_id=workflow)
    assert sorted(input_text(t) for t in tasks) == sorted(expected)
    assert all(t["status"] == "completed" for t in tasks)
    runs = [r["message"] for r in agents.runs if r["agent"] == agent]
    assert len(runs) == 2 and expected[0] in runs
    assert dead_letters(env) == []
    secret_values = (real_spark.api_key, SECRET, env["SPARK_INTEGRATIONS_SECRET_KEYS"])
    assert not logged(workers, *secret_values), "a secret is in a worker's log"
