"""Outgoing webhooks end to end: real workers and beat, the store on PostgreSQL, and a loopback
receiver (tests/emulators/webhook_receiver.py) verifying every post with the standardwebhooks
package.

- A sync's end is delivered once, as ``sync.succeeded``, by a worker of
  ``integrations.webhooks``: with none running, the sync still finishes and nothing is posted.
- A receiver failing its first attempts gets the event on a later one (the same ``webhook-id``);
  one failing every attempt of the schedule ends in a dead letter, announced to another
  subscriber only, and ``dlq replay`` of it delivers the event.
- A receiver that hangs neither holds up nor fails the sync; the fleet gives up waiting, tries
  again, and the receiver drops the repeat by its ``webhook-id``.

The schedule's waits (5 s, then minutes to hours) are shortened by moving a delivery's
``next_attempt_at`` in the store, as the passing of time would; beat's sweep sends it then.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from spark_integrations.store import DeadLetter, SyncRun, session_scope
from spark_integrations.store.models_webhooks import OutboundDelivery, OutboundEvent
from spark_integrations.store.types import utcnow
from tests.emulators.webhook_receiver import WebhookReceiver
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    broker_idle,
    client_app,
    run_cli,
    start_sandbox,
    start_workers,
    wait_for,
)
from tests.integration.providers import start_emulator

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

KEY = "sk-subscribers-" + uuid.uuid4().hex


def database(env: dict[str, str]) -> str:
    return env["SPARK_INTEGRATIONS_DATABASE_URL"]


def subscribe(env: dict[str, str], receiver: WebhookReceiver, hook: str, *events: str) -> str:
    """``subscribers add`` for ``hook`` (the fleet makes the secret); its id."""
    added = run_cli(
        env, "subscribers", "add", receiver.hook_url(hook), "--events", ",".join(events), "--json"
    )
    assert added.returncode == 0, added.stderr
    view = json.loads(added.stdout)
    receiver.expect(hook, view["secret"])
    return str(view["id"])


def new_sync(env: dict[str, str], tmp: Path, processes: list[Any], records: int = 5) -> str:
    box = start_sandbox(env, tmp, processes, f"--records={records}", f"--api-key={KEY}")
    cid = add_connection(env, "items", {"base_url": box.url}, f"api_key={KEY}")
    added = run_cli(env, "syncs", "add", cid, "items", "--json")
    assert added.returncode == 0, added.stderr
    return str(json.loads(added.stdout)["id"])


def run_sync(env: dict[str, str], sync_id: str) -> dict[str, Any]:
    ran = run_cli(env, "syncs", "run", sync_id, "--wait", "--json", timeout=120)
    assert ran.returncode == 0, ran.stderr
    return dict(json.loads(ran.stdout))


def deliveries_of(env: dict[str, str], subscriber_id: str) -> list[OutboundDelivery]:
    with session_scope(database(env)) as session:
        found = session.scalars(
            select(OutboundDelivery)
            .where(OutboundDelivery.subscriber_id == subscriber_id)
            .order_by(OutboundDelivery.created_at)
        ).all()
        session.expunge_all()
        return list(found)


def make_due(env: dict[str, str], delivery_id: str) -> None:
    """The wait before the delivery's next attempt has passed (if its last attempt has ended:
    one under way holds the delivery, and decides the next attempt's time when it ends)."""
    with session_scope(database(env)) as session:
        session.execute(
            update(OutboundDelivery)
            .where(OutboundDelivery.id == delivery_id, OutboundDelivery.status == "pending")
            .where(OutboundDelivery.last_error.is_not(None))
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def ended_attempts(env: dict[str, str], delivery_id: str) -> int:
    """Attempts made that have ended (a pending delivery without an error has one under way)."""
    with session_scope(database(env)) as session:
        row = session.get(OutboundDelivery, delivery_id)
        assert row is not None
        under_way = row.status == "pending" and row.last_error is None and row.attempts > 0
        return row.attempts - 1 if under_way else row.attempts


def queue_worker(env: dict[str, str], log: Path, queues: str) -> FleetProcess:
    args = ["worker", f"--queues={queues}", "--concurrency=1", "--", "--without-mingle"]
    return FleetProcess(env, [*args, "--without-gossip", f"--hostname={log.stem}@%h"], log)


def start(proc: FleetProcess, processes: list[Any], ready: bool = True) -> FleetProcess:
    processes.append(proc)
    proc.start()
    return proc.wait_ready() if ready else proc


def test_a_sync_end_is_delivered_once_by_a_webhooks_worker_never_by_the_sync(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = redis_env
    receiver = start_emulator(WebhookReceiver(), processes)
    syncs = subscribe(env, receiver, "syncs", "sync.*")
    other = subscribe(env, receiver, "reauth", "connection.needs_reauth")
    sync_id = new_sync(env, short_tmp, processes)
    start(queue_worker(env, short_tmp / "syncs.log", "integrations.syncs"), processes)

    result = run_sync(env, sync_id)
    assert result["ok"] is True and result["records"] == 5
    # The run is over; its event waits for a worker of integrations.webhooks: nothing was
    # posted by the sync's own task.
    [pending] = deliveries_of(env, syncs)
    assert (pending.status, pending.attempts) == ("pending", 0)
    assert receiver.attempts("syncs") == []

    start(queue_worker(env, short_tmp / "hooks.log", "integrations.webhooks"), processes)
    wait_for(lambda: deliveries_of(env, syncs)[0].status == "delivered", 60, "the delivery")
    wait_for(lambda: broker_idle(env, "integrations.webhooks"), 30, "the webhooks queue")
    [message] = receiver.accepted("syncs")
    assert message["type"] == "sync.succeeded"
    assert message["data"]["run_id"] == result["run_id"]
    assert message["data"]["sync_id"] == sync_id
    assert (message["data"]["records"], message["data"]["status"]) == (5, "succeeded")
    with session_scope(database(env)) as session:
        event = session.get(OutboundEvent, message["id"])
        assert event is not None and event.type == "sync.succeeded"
    assert len(receiver.attempts("syncs")) == 1
    assert receiver.stats().get("refused", 0) == 0
    assert receiver.attempts("reauth") == [] and deliveries_of(env, other) == []


def event_id_of(env: dict[str, str], delivery_id: str) -> str:
    with session_scope(database(env)) as session:
        row = session.get(OutboundDelivery, delivery_id)
        assert row is not None
        return row.event_id


def posts_of(receiver: WebhookReceiver, hook: str, event_id: str) -> list[dict[str, Any]]:
    """The requests to ``hook`` carrying ``event_id`` (each attempt of its delivery)."""
    return [p for p in receiver.attempts(hook) if p["headers"].get("webhook-id") == event_id]


def letters(env: dict[str, str]) -> list[dict[str, Any]]:
    with session_scope(database(env)) as session:
        return [
            {"id": d.id, "task": d.task, "error": d.error}
            for d in session.scalars(select(DeadLetter)).all()
        ]


def ping(env: dict[str, str], subscriber_id: str) -> str:
    sent = run_cli(env, "subscribers", "test", subscriber_id, "--json")
    assert sent.returncode == 0, sent.stderr
    return str(json.loads(sent.stdout)["delivery_id"])


def attempts_made(env: dict[str, str], delivery_id: str) -> tuple[int, str]:
    with session_scope(database(env)) as session:
        row = session.get(OutboundDelivery, delivery_id)
        assert row is not None
        return row.attempts, row.status


def test_a_failing_receiver_gets_the_event_on_retry_and_an_exhausted_one_is_dead_lettered(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = redis_env
    receiver = start_emulator(WebhookReceiver(), processes)
    flaky = subscribe(env, receiver, "flaky", "*")
    watch = subscribe(env, receiver, "watch", "dead_letter.written")
    start_workers(env, short_tmp, processes)
    start(FleetProcess(env, ["beat"], short_tmp / "beat.log"), processes, ready=False)

    # Two failed attempts: the second comes from beat's sweep 5 s after the first; the third,
    # due in 5 minutes, is made due here.
    receiver.fail("flaky", 503, times=2)
    first = ping(env, flaky)
    wait_for(lambda: ended_attempts(env, first) == 2, 60, "the second attempt")
    make_due(env, first)
    wait_for(lambda: attempts_made(env, first) == (3, "delivered"), 60, "the third attempt")
    first_event = event_id_of(env, first)
    posts = posts_of(receiver, "flaky", first_event)
    assert len(posts) == 3, (receiver.attempts("flaky"), letters(env))
    [message] = receiver.accepted("flaky")
    assert message["id"] == first_event
    assert message["type"] == "ping" and message["data"] == {"subscriber_id": flaky}

    # Every attempt of the schedule fails: a dead letter, announced to the watcher.
    receiver.fail("flaky", 500, times=1000)
    second = ping(env, flaky)
    app = client_app(env)
    for made in range(1, 8):
        # Each attempt ended, the wait before the next has passed (beat's sweep may have sent
        # one already after the first's 5 s: then the next round makes that one's wait pass).
        wait_for(lambda m=made: ended_attempts(env, second) >= m, 60, f"attempt {made}")
        make_due(env, second)
        app.send_task("integrations.sweep_deliveries", queue="integrations.maintenance")
    wait_for(lambda: attempts_made(env, second) == (8, "failed"), 60, "the delivery to fail")
    assert len(posts_of(receiver, "flaky", event_id_of(env, second))) == 8
    assert len(receiver.attempts("flaky")) == 3 + 8, (receiver.attempts("flaky"), letters(env))
    [letter] = letters(env)
    assert letter["task"] == "integrations.deliver_event"
    assert "after 8 attempts: the receiver answered HTTP 500." in letter["error"]
    letter_id = letter["id"]
    wait_for(lambda: receiver.accepted("watch"), 60, "the dead letter's announcement")
    [announced] = receiver.accepted("watch")
    assert announced["type"] == "dead_letter.written"
    assert announced["data"]["dead_letter_id"] == letter_id
    assert announced["data"]["subscriber_id"] == flaky
    wait_for(lambda: deliveries_of(env, watch)[0].status == "delivered", 30, "the watcher's")
    # Not to the subscriber that failed, though it wants every event.
    assert announced["id"] not in {d.event_id for d in deliveries_of(env, flaky)}

    # Fixed, and replayed: delivered.
    receiver.fail("flaky", 500, times=0)
    replayed = run_cli(env, "dlq", "replay", letter_id, "--json")
    assert replayed.returncode == 0, replayed.stderr
    wait_for(lambda: attempts_made(env, second) == (1, "delivered"), 60, "the replay")
    assert [m["type"] for m in receiver.accepted("flaky")] == ["ping", "ping"]
    # `subscribers test --wait` says how the first attempt went.
    waited = run_cli(env, "subscribers", "test", flaky, "--wait", "--json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "delivered"
    receiver.fail("flaky", 502, times=1)
    failed = run_cli(env, "subscribers", "test", flaky, "--wait")
    assert failed.returncode == 1 and "the receiver answered HTTP 502." in failed.stdout
    assert receiver.stats().get("refused", 0) == 0


def test_a_hanging_receiver_neither_holds_up_nor_fails_the_sync(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = redis_env
    receiver = start_emulator(WebhookReceiver(), processes)
    slow = subscribe(env, receiver, "slow", "sync.succeeded")
    sync_id = new_sync(env, short_tmp, processes)
    start_workers(env, short_tmp, processes, concurrency=2)
    start(FleetProcess(env, ["beat"], short_tmp / "beat.log"), processes, ready=False)
    receiver.hold()
    try:
        result = run_sync(env, sync_id)
        assert result["ok"] is True and result["records"] == 5
        wait_for(lambda: receiver.holding >= 1, 60, "the receiver to hold the post")
        # The fleet stops waiting for the answer, and schedules the next attempt.
        wait_for(
            lambda: "did not answer within" in (deliveries_of(env, slow)[0].last_error or ""),
            60,
            "the attempt to time out",
        )
        assert receiver.accepted("slow") == []
        again = run_sync(env, sync_id)  # the worker is free for syncs meanwhile
        assert again["ok"] is True
    finally:
        receiver.release()
    with session_scope(database(env)) as session:
        runs = session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)).all()
        assert [r.status for r in runs] == ["succeeded", "succeeded"]
    first = deliveries_of(env, slow)[0].id

    def retried() -> bool:
        make_due(env, first)  # whenever its last attempt has ended: the wait has passed
        return attempts_made(env, first)[1] == "delivered"

    wait_for(retried, 60, "the retry", interval=1)
    wait_for(lambda: len(receiver.accepted("slow")) == 2, 60, "both runs' events")
    # The held post was taken once released; the retry of the same webhook-id was a repeat.
    runs_told = sorted(m["data"]["run_id"] for m in receiver.accepted("slow"))
    assert runs_told == sorted(r.id for r in runs)
    assert receiver.stats().get("repeats", 0) >= 1
