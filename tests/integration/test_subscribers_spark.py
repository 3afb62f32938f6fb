"""A spark subscriber against the real automagik-spark 0.3.7: a sync's end runs the chosen
workflow once, with the event as its input, through the spark connection's ``run_workflow``;
the delivery sent again (a replay) runs nothing more, the call's idempotency key being the
event's and the subscriber's."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from spark_integrations.store import session_scope
from spark_integrations.store.models_webhooks import OutboundDelivery
from tests.integration.fleet import (
    add_connection,
    broker_idle,
    client_app,
    run_cli,
    start_sandbox,
    start_workers,
    wait_for,
)
from tests.integration.providers import logged
from tests.integration.real_spark import agent_workflow

pytestmark = [pytest.mark.server, pytest.mark.timeout(420)]

KEY = "sk-subscribers-spark-" + uuid.uuid4().hex


def event_of(task: dict[str, Any]) -> dict[str, Any]:
    """The event a task row of spark ran with (spark 0.3.7 keeps a JSON input parsed)."""
    data = task["input_data"]
    if isinstance(data, str):
        data = json.loads(data)
    assert isinstance(data, dict), data
    return data


def test_a_spark_subscriber_runs_its_workflow_once_per_event(
    real_spark: Any, redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = redis_env
    made = agent_workflow(
        real_spark, env, processes, prefix="events", description="Hears of the fleet's events.",
        slow_seconds=0.5,
    )  # fmt: skip
    agents, agent, workflow = made.agents, made.agent, made.workflow_id
    added = run_cli(
        env, "subscribers", "add", "--spark", made.target,
        "--events", "sync.succeeded", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    subscriber = json.loads(added.stdout)["id"]
    box = start_sandbox(env, short_tmp, processes, "--records=3", f"--api-key={KEY}")
    source = add_connection(env, "items", {"base_url": box.url}, f"api_key={KEY}")
    sync = run_cli(env, "syncs", "add", source, "items", "--json")
    assert sync.returncode == 0, sync.stderr
    sync_id = json.loads(sync.stdout)["id"]
    workers = start_workers(env, short_tmp, processes, concurrency=2)

    ran = run_cli(env, "syncs", "run", sync_id, "--wait", "--json", timeout=120)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    wait_for(lambda: delivery_status(env, subscriber) == "delivered", 60, "the delivery")
    tasks = wait_for(lambda: real_spark.tasks(workflow_id=workflow), 120, "spark's run")
    [task] = tasks
    event = event_of(task)
    assert event["type"] == "sync.succeeded"
    assert event["data"]["run_id"] == run_id and event["data"]["records"] == 3
    wait_for(lambda: task_status(real_spark, workflow) == "completed", 60, "the run to end")
    [ran_with] = [r["message"] for r in agents.runs if r["agent"] == agent]
    assert event["id"] in str(ran_with)  # what the workflow's agent was given

    # The delivery failed and is replayed (as `dlq replay` sends it): no second run.
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        session.execute(
            update(OutboundDelivery)
            .where(OutboundDelivery.subscriber_id == subscriber)
            .values(status="failed")
        )
        [delivery_id] = session.scalars(
            select(OutboundDelivery.id).where(OutboundDelivery.subscriber_id == subscriber)
        ).all()
    app = client_app(env)
    again = app.send_task(
        "integrations.deliver_event", kwargs={"delivery_id": delivery_id},
        queue="integrations.webhooks",
    )  # fmt: skip
    assert again.get(timeout=60)["status"] == "delivered"
    wait_for(lambda: broker_idle(env, "integrations.calls"), 60, "the repeated call")
    assert len(real_spark.tasks(workflow_id=workflow)) == 1
    assert len([r for r in agents.runs if r["agent"] == agent]) == 1
    assert not logged(workers, real_spark.api_key, KEY, env["SPARK_INTEGRATIONS_SECRET_KEYS"])


def task_status(spark: Any, workflow: str) -> str | None:
    rows = spark.tasks(workflow_id=workflow)
    return str(rows[0]["status"]) if rows else None


def delivery_status(env: dict[str, str], subscriber: str) -> str | None:
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        rows = session.scalars(
            select(OutboundDelivery).where(OutboundDelivery.subscriber_id == subscriber)
        ).all()
        return rows[0].status if rows else None
