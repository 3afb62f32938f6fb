"""``integrations.process_webhook`` with real workers, a real sandbox and the store on PostgreSQL.

Events are stored as the gateway stores them (a ``received`` row) and the task is sent by name
through the broker, as the intake and its sweep send it:

- an event routed to a sync runs the sync; an event no route handles runs the syncs of the
  streams its connector declares for it;
- an event routed to an action calls it once, with params rendered from the payload, though
  the task is sent twice, and though the event is processed again as after a crash between
  its calls and its settling (the route's idempotency key answers the repeat); ``webhooks
  replay`` calls it again, on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import func, select, update

from spark_integrations.store import Record, WebhookEvent, session_scope
from spark_integrations.store.types import utcnow
from tests.integration.fleet import (
    SandboxProcess,
    add_connection,
    broker_idle,
    client_app,
    dead_letters,
    run_cli,
    start_sandbox,
    start_workers,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(420)]

KEY = "sk-webhook-processing"


def database(env: dict[str, str]) -> str:
    return env["SPARK_INTEGRATIONS_DATABASE_URL"]


def cli_json(env: dict[str, str], *args: str) -> Any:
    done = run_cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def store_event(env: dict[str, str], connection_id: str, event_type: str, data: Any) -> str:
    """A delivery as the intake stores it, before it sends the task."""
    with session_scope(database(env)) as session:
        event = WebhookEvent(
            provider="sandbox",
            connection_id=connection_id,
            delivery_id=f"msg_{utcnow().timestamp()}",
            event_type=event_type,
            payload={"type": event_type, "timestamp": "2026-12-06T10:00:00Z", "data": data},
            enqueued_at=utcnow(),
        )
        session.add(event)
        session.flush()
        return event.id


def process(app: Celery, event_id: str) -> Any:
    """Send ``integrations.process_webhook`` by name, as the intake does."""
    return app.send_task(
        "integrations.process_webhook", kwargs={"event_id": event_id}, queue="integrations.webhooks"
    )


def stored(env: dict[str, str], event_id: str) -> WebhookEvent:
    with session_scope(database(env)) as session:
        event = session.get(WebhookEvent, event_id)
        assert event is not None
        session.expunge(event)
        return event


def records(env: dict[str, str], sync_id: str) -> int:
    with session_scope(database(env)) as session:
        return int(session.scalar(select(func.count()).where(Record.sync_id == sync_id)) or 0)


@pytest.fixture
def sandbox(redis_env: dict[str, str], short_tmp: Path, processes: list[Any]) -> SandboxProcess:
    return start_sandbox(redis_env, short_tmp, processes, "--records=30", f"--api-key={KEY}")


@pytest.fixture
def conn(redis_env: dict[str, str], sandbox: SandboxProcess) -> str:
    return add_connection(redis_env, "hooks", {"base_url": sandbox.url}, f"api_key={KEY}")


def test_an_event_routed_to_a_sync_runs_it_and_a_declared_event_refreshes_its_stream(
    redis_env: dict[str, str],
    sandbox: SandboxProcess,
    conn: str,
    short_tmp: Path,
    processes: list[Any],
) -> None:
    env = redis_env
    sync_id = cli_json(env, "syncs", "add", conn, "items")["id"]
    route = cli_json(env, "webhooks", "route", "add", conn, "item.updated", "--sync", sync_id)
    start_workers(env, short_tmp, processes, concurrency=2)
    app = client_app(env)

    event_id = store_event(env, conn, "item.updated", {"id": "item-000001"})
    answer = process(app, event_id).get(timeout=120)
    assert (answer["ok"], answer["event_id"], answer["routes"]) == (True, event_id, 1)
    (run,) = answer["runs"]
    assert (run["kind"], run["route_id"], run["sync_id"]) == ("sync", route["id"], sync_id)
    ran = app.AsyncResult(run["task_id"]).get(timeout=180)
    assert (ran["ok"], ran["sync_id"], ran["records"]) == (True, sync_id, 30)
    assert records(env, sync_id) == 30
    event = stored(env, event_id)
    assert (event.status, event.attempts, event.error) == ("processed", 1, None)
    assert {"ok": True, "event_id": event_id, **(event.result or {})} == answer
    listed = cli_json(env, "webhooks", "list")
    assert [(e["id"], e["status"]) for e in listed] == [(event_id, "processed")]

    # item.created matches no route: the sandbox declares that an item's event refreshes its
    # item streams, so the connection's enabled items sync runs and reads what changed.
    sandbox.control("update", count=3)
    created = store_event(env, conn, "item.created", {"id": "item-000031"})
    declared = process(app, created).get(timeout=120)
    assert declared["routes"] == 0
    assert declared["refreshed"] == ["items", "items_newest", "items_by_tag"]
    (refresh,) = declared["runs"]
    assert (refresh["kind"], refresh["stream"], refresh["sync_id"]) == ("sync", "items", sync_id)
    again = app.AsyncResult(refresh["task_id"]).get(timeout=180)
    assert again["ok"] is True and 1 <= again["records"] <= 3
    # An event the sandbox declares nothing for does nothing.
    other = store_event(env, conn, "message.created", {"id": "m-1"})
    assert process(app, other).get(timeout=120) == {"ok": True, "event_id": other, "routes": 0}
    assert stored(env, other).result == {"routes": 0}
    assert dead_letters(env) == []


def messages(box: SandboxProcess, text: str) -> list[dict[str, Any]]:
    return [m for m in box.messages() if m["text"] == text]


def test_an_event_routed_to_an_action_calls_it_once_however_often_it_is_processed(
    redis_env: dict[str, str],
    sandbox: SandboxProcess,
    conn: str,
    short_tmp: Path,
    processes: list[Any],
) -> None:
    env = redis_env
    route = cli_json(
        env, "webhooks", "route", "add", conn, "item.*", "--action", f"{conn}:create_message",
        "--with", "text=item {data.id} is now {data.name} ({type})",
    )  # fmt: skip
    start_workers(env, short_tmp, processes, concurrency=2)
    app = client_app(env)
    event_id = store_event(env, conn, "item.updated", {"id": "item-7", "name": "Seven"})
    text = "item item-7 is now Seven (item.updated)"

    # The task delivered twice (two messages at once): one processes the event, the other
    # waits for it and answers the same.
    first, second = process(app, event_id), process(app, event_id)
    answer = first.get(timeout=180)
    assert second.get(timeout=180) == answer
    (run,) = answer["runs"]
    key = f"webhook:{event_id}:{route['id']}"
    assert (run["kind"], run["action"], run["idempotency_key"]) == ("action", "create_message", key)
    call = app.AsyncResult(run["task_id"]).get(timeout=120)
    assert call["ok"] is True and call["data"]["text"] == text
    assert [m["idempotency_key"] for m in messages(sandbox, text)] == [key]
    assert stored(env, event_id).attempts == 1

    # As after a crash between its calls and its settling: processed again, the call is sent
    # again with its key, and the fleet answers it from the first call's record.
    with session_scope(database(env)) as session:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(status="received", result=None, processed_at=None)
        )
    redone = process(app, event_id).get(timeout=180)
    repeat = app.AsyncResult(redone["runs"][0]["task_id"]).get(timeout=120)
    assert repeat.get("replayed") is True and repeat["data"]["text"] == text
    assert len(messages(sandbox, text)) == 1
    assert sandbox.stats()["messages_created"] == 1

    # webhooks replay processes it again on purpose: the replay's call is made.
    replay = cli_json(env, "webhooks", "replay", event_id)
    assert replay["id"] == event_id and replay["replay"] == 1
    replayed = app.AsyncResult(replay["task_id"]).get(timeout=180)
    assert replayed["replay"] == 1
    assert replayed["runs"][0]["idempotency_key"] == f"{key}:replay-1"
    app.AsyncResult(replayed["runs"][0]["task_id"]).get(timeout=120)
    assert [m["idempotency_key"] for m in messages(sandbox, text)] == [key, f"{key}:replay-1"]
    wait_for(lambda: broker_idle(env, "integrations.calls", "integrations.webhooks"), 60, "idle")
    assert sandbox.stats()["messages_created"] == 2
    shown = cli_json(env, "webhooks", "show", event_id)
    assert shown["status"] == "processed" and shown["result"]["replay"] == 1
    assert dead_letters(env) == []
