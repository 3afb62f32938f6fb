"""Outgoing webhooks in one process: emit stores what subscribers want (and nothing else), the
broker being down costs nothing but a sweep later, and ``integrations.deliver_event`` posts,
retries through the store, dead-letters and announces without looping. The receiver is
``responses``; it verifies each post with the ``standardwebhooks`` package."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from celery import Celery
from sqlalchemy import select, update
from standardwebhooks import Webhook

from spark_integrations.constants import (
    TASK_DELIVER_EVENT,
    TASK_SWEEP_DELIVERIES,
)
from spark_integrations.errors import UsageError
from spark_integrations.store import DeadLetter, SecretBox, session_scope
from spark_integrations.store.connections import add_connection
from spark_integrations.store.models_webhooks import OutboundDelivery, OutboundEvent, Subscriber
from spark_integrations.store.types import utcnow
from spark_integrations.tasks import deliveries, webhooks  # noqa: F401 - registers the tasks
from spark_integrations.tasks.deadletters import replay_kwargs, write_dead_letter
from spark_integrations.webhooks import outbound
from spark_integrations.webhooks.delivery import RETRY_SCHEDULE, run_workflow
from spark_integrations.webhooks.subscribers import (
    add_spark_subscriber,
    add_url_subscriber,
    new_secret,
    set_enabled,
)
from tests.unit.task_env import task_env_fixture  # noqa: F401 - the task_env fixture

HOOK = "https://receiver.example/hooks/fleet"
APP = Celery("unit-outbound", set_as_current=False)
APP.finalize()  # the fleet's shared tasks (imported above), registered on this app


def run_task(name: str, **kwargs: Any) -> Any:
    """A task's body, as a worker runs it for one delivery of one message."""
    task = APP.tasks[name]
    task.push_request(id=f"unit-{uuid.uuid4()}", retries=0, called_directly=False)
    try:
        return task.run(**kwargs)
    finally:
        task.pop_request()


def deliver(**kwargs: Any) -> dict[str, Any]:
    return dict(run_task(TASK_DELIVER_EVENT, **kwargs))


def sweep() -> dict[str, int]:
    return dict(run_task(TASK_SWEEP_DELIVERIES))


@pytest.fixture(name="box")
def box_fixture(fernet_key: str) -> SecretBox:
    return SecretBox([fernet_key])


@pytest.fixture(name="sent")
def sent_fixture(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every deliver_event message emit and the sweep would send: (delivery id, attempts)."""
    messages: list[tuple[str, int]] = []

    def record(delivery_id: str, attempt: int, app: Any = None) -> None:
        messages.append((delivery_id, attempt))

    monkeypatch.setattr(outbound, "send_delivery", record)
    monkeypatch.setattr(deliveries, "send_delivery", record)
    return messages


def subscribe(
    url: str, box: SecretBox, events: list[str], target: str = HOOK, secret: str | None = None
) -> tuple[str, str]:
    """A URL subscriber; its id and secret."""
    secret = secret or new_secret()
    with session_scope(url) as session:
        sub = add_url_subscriber(session, box, url=target, events=events, secret=secret)
        return sub.id, secret


def rows(url: str, model: Any) -> list[Any]:
    with session_scope(url) as session:
        return list(session.scalars(select(model)))


def delivery_of(url: str, subscriber_id: str) -> OutboundDelivery:
    with session_scope(url) as session:
        found = session.scalars(
            select(OutboundDelivery).where(OutboundDelivery.subscriber_id == subscriber_id)
        ).all()
    assert len(found) == 1, found
    return found[0]


def make_due(url: str, delivery_id: str) -> None:
    with session_scope(url) as session:
        session.execute(
            update(OutboundDelivery)
            .where(OutboundDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


@pytest.fixture
def receiver() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def verifying(secret: str, status: int, seen: list[dict[str, Any]]) -> Any:
    """A receiver's callback: verify the post per Standard Webhooks, keep it, answer ``status``."""

    def callback(request: Any) -> tuple[int, dict[str, str], str]:
        headers = dict(request.headers)
        payload = Webhook(secret).verify(request.body, headers)
        seen.append({"headers": headers, "payload": payload, "body": request.body})
        return status, {}, ""

    return callback


# -- emit ---------------------------------------------------------------------------------------


def test_emit_with_no_subscriber_wanting_it_writes_and_sends_nothing(
    task_env: str, box: SecretBox, sent: list[Any]
) -> None:
    outbound.emit("sync.succeeded", {"sync_id": "s1"})
    subscribe(task_env, box, ["connection.needs_reauth", "dead_letter.*"])
    off, _ = subscribe(task_env, box, ["*"])
    with session_scope(task_env) as session:
        set_enabled(session, off, False)
    outbound.emit("sync.succeeded", {"sync_id": "s1"})
    assert rows(task_env, OutboundEvent) == []
    assert rows(task_env, OutboundDelivery) == []
    assert sent == []


def test_emit_stores_a_delivery_for_each_subscriber_that_wants_the_event_and_sends_it(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]]
) -> None:
    by_pattern, _ = subscribe(task_env, box, ["sync.*"])
    by_name, _ = subscribe(task_env, box, ["sync.failed", "sync.succeeded"])
    subscribe(task_env, box, ["dead_letter.written"])
    outbound.emit("sync.succeeded", {"sync_id": "s1", "records": 3, "at": utcnow()})
    [event] = rows(task_env, OutboundEvent)
    assert event.type == "sync.succeeded"
    assert event.data["sync_id"] == "s1" and event.data["records"] == 3
    assert isinstance(event.data["at"], str)  # stored as JSON holds it
    found = rows(task_env, OutboundDelivery)
    assert {d.subscriber_id for d in found} == {by_pattern, by_name}
    assert all(d.status == "pending" and d.attempts == 0 for d in found)
    assert sorted(sent) == sorted((d.id, 0) for d in found)


def test_emit_never_raises_when_the_store_is_down(
    monkeypatch: pytest.MonkeyPatch, sent: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(
        "SPARK_INTEGRATIONS_DATABASE_URL",
        "postgresql+psycopg://fleet:hunter2@127.0.0.1:1/none?connect_timeout=2",
    )
    monkeypatch.setenv("SPARK_INTEGRATIONS_BROKER_URL", "redis://127.0.0.1:1/0")
    outbound.emit("sync.failed", {"sync_id": "s1"})
    assert sent == []
    assert "sync.failed was not stored" in caplog.text
    assert "hunter2" not in caplog.text


def test_with_the_broker_down_emit_stores_the_event_and_the_sweep_sends_it(
    task_env: str, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscriber, _ = subscribe(task_env, box, ["sync.*"])
    down = Celery("down", broker="redis://127.0.0.1:1/0")
    down.conf.broker_connection_timeout = 0.5
    real_send = outbound.send_delivery
    monkeypatch.setattr(outbound, "send_delivery", lambda d, a, app=None: real_send(d, a, down))
    outbound.emit("sync.succeeded", {"sync_id": "s1"})  # returns: the broker refused
    stored = delivery_of(task_env, subscriber)
    assert stored.status == "pending" and stored.next_attempt_at <= utcnow()
    swept: list[tuple[str, int]] = []
    monkeypatch.setattr(deliveries, "send_delivery", lambda d, a, app=None: swept.append((d, a)))
    assert sweep() == {"sent": 1}
    assert swept == [(stored.id, 0)]
    # Handed out: the next sweep leaves it to its message for the dispatch lease.
    assert sweep() == {"sent": 0}
    down.close()


# -- deliver_event ------------------------------------------------------------------------------


def test_an_event_is_posted_signed_per_standard_webhooks_and_delivered_once(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], receiver: Any
) -> None:
    subscriber, secret = subscribe(task_env, box, ["sync.*"])
    seen: list[dict[str, Any]] = []
    receiver.add_callback(responses.POST, HOOK, callback=verifying(secret, 204, seen))
    outbound.emit("sync.succeeded", {"sync_id": "s1", "run_id": "r1"})
    [(delivery_id, attempts)] = sent
    answer = deliver(delivery_id=delivery_id, attempt=attempts)
    assert answer["status"] == "delivered"
    # A second message for the same attempt (the sweep sent one again) posts nothing.
    again = deliver(delivery_id=delivery_id, attempt=attempts)
    assert again["skipped"] is True
    [post] = seen
    [event] = rows(task_env, OutboundEvent)
    assert post["headers"]["webhook-id"] == event.id
    assert post["payload"] == {
        "type": "sync.succeeded",
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": {"sync_id": "s1", "run_id": "r1"},
    }
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(new_secret()).verify(post["body"], post["headers"])
    stored = delivery_of(task_env, subscriber)
    assert (stored.status, stored.attempts) == ("delivered", 1)
    assert stored.delivered_at is not None


def test_a_failed_attempt_is_retried_from_the_store_with_the_same_webhook_id(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], receiver: Any
) -> None:
    subscriber, secret = subscribe(task_env, box, ["sync.*"])
    seen: list[dict[str, Any]] = []
    receiver.add_callback(responses.POST, HOOK, callback=verifying(secret, 503, seen))
    outbound.emit("sync.failed", {"sync_id": "s1", "error": "it broke."})
    [(delivery_id, _)] = sent
    before = utcnow()
    first = deliver(delivery_id=delivery_id, attempt=0)
    assert first["status"] == "retried"
    stored = delivery_of(task_env, subscriber)
    assert stored.status == "pending" and stored.attempts == 1
    assert stored.last_error == "the receiver answered HTTP 503."
    assert stored.next_attempt_at >= before + timedelta(seconds=RETRY_SCHEDULE[1])
    # Not yet due: the sweep sends nothing. Once due, it sends the second attempt.
    sent.clear()
    assert sweep() == {"sent": 0}
    make_due(task_env, delivery_id)
    assert sweep() == {"sent": 1}
    assert sent == [(delivery_id, 1)]
    receiver.remove(responses.POST, HOOK)  # the receiver is back
    receiver.add_callback(responses.POST, HOOK, callback=verifying(secret, 200, seen))
    assert deliver(delivery_id=delivery_id, attempt=1)["status"] == "delivered"
    # Both attempts verified, under the event's id: the receiver can tell the repeat.
    assert [post["headers"]["webhook-id"] for post in seen] == [
        rows(task_env, OutboundEvent)[0].id
    ] * 2
    assert seen[0]["body"] == seen[1]["body"]


def exhaust(url: str, delivery_id: str) -> dict[str, Any]:
    """Every attempt of the schedule, each made due in the store; the last answer."""
    answer: dict[str, Any] = {}
    for attempt in range(len(RETRY_SCHEDULE)):
        make_due(url, delivery_id)
        answer = deliver(delivery_id=delivery_id, attempt=attempt)
    return answer


def test_an_exhausted_delivery_is_dead_lettered_and_announced_to_the_others_only(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], receiver: Any
) -> None:
    failing, _ = subscribe(task_env, box, ["sync.*", "dead_letter.written"])
    other, _ = subscribe(
        task_env, box, ["dead_letter.written"], target="https://other.example/hooks"
    )
    receiver.add(responses.POST, HOOK, status=500)
    outbound.emit("sync.succeeded", {"sync_id": "s1"})
    [(delivery_id, _)] = sent
    answer = exhaust(task_env, delivery_id)
    assert answer["status"] == "failed" and answer["attempt"] == len(RETRY_SCHEDULE)
    assert len(receiver.calls) == len(RETRY_SCHEDULE)
    assert delivery_of(task_env, failing).status == "failed"
    [letter] = rows(task_env, DeadLetter)
    assert letter.task == TASK_DELIVER_EVENT
    assert f"after {len(RETRY_SCHEDULE)} attempts: the receiver answered HTTP 500." in letter.error
    assert replay_kwargs(letter, box) == {"delivery_id": delivery_id}
    # Announced to the other subscriber, not to the one that failed.
    [announced] = [e for e in rows(task_env, OutboundEvent) if e.type == "dead_letter.written"]
    assert announced.data["dead_letter_id"] == letter.id
    assert announced.data["subscriber_id"] == failing
    with session_scope(task_env) as session:
        to = session.scalars(
            select(OutboundDelivery.subscriber_id).where(OutboundDelivery.event_id == announced.id)
        ).all()
    assert to == [other]


def test_an_announcement_that_fails_is_never_announced_again(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], receiver: Any
) -> None:
    """Two subscribers of dead letters that both fail cannot feed each other forever."""
    subscribe(task_env, box, ["dead_letter.written"])
    subscribe(task_env, box, ["dead_letter.written"], target="https://other.example/hooks")
    receiver.add(responses.POST, HOOK, status=500)
    receiver.add(responses.POST, "https://other.example/hooks", status=500)
    write_dead_letter(task="integrations.call", task_id="t1", kwargs={}, error="x.", attempts=1)
    assert len(sent) == 2
    for delivery_id, _ in list(sent):
        exhaust(task_env, delivery_id)
    assert len(rows(task_env, DeadLetter)) == 3  # the call's, and one per failed delivery
    assert [e.type for e in rows(task_env, OutboundEvent)] == ["dead_letter.written"]


def test_replaying_the_dead_letter_starts_the_attempts_over(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], receiver: Any
) -> None:
    subscriber, secret = subscribe(task_env, box, ["sync.*"])
    receiver.add(responses.POST, HOOK, status=500)
    outbound.emit("sync.succeeded", {"sync_id": "s1"})
    [(delivery_id, _)] = sent
    exhaust(task_env, delivery_id)
    [letter] = rows(task_env, DeadLetter)
    seen: list[dict[str, Any]] = []
    receiver.remove(responses.POST, HOOK)  # the receiver is fixed
    receiver.add_callback(responses.POST, HOOK, callback=verifying(secret, 200, seen))
    answer = deliver(**replay_kwargs(letter, box))
    assert answer["status"] == "delivered" and answer["attempt"] == 1
    assert len(seen) == 1
    assert delivery_of(task_env, subscriber).status == "delivered"
    # A replay of a delivered (or still pending) delivery does nothing.
    assert deliver(**replay_kwargs(letter, box))["skipped"] is True


def test_410_gone_disables_the_subscriber_without_a_dead_letter(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], receiver: Any
) -> None:
    subscriber, _ = subscribe(task_env, box, ["sync.*"])
    receiver.add(responses.POST, HOOK, status=410)
    outbound.emit("sync.succeeded", {"sync_id": "s1"})
    outbound.emit("sync.succeeded", {"sync_id": "s2"})
    first, second = sent
    answer = deliver(delivery_id=first[0], attempt=0)
    assert answer["status"] == "failed" and "410 Gone" in answer["error"]
    with session_scope(task_env) as session:
        assert session.get(Subscriber, subscriber).enabled is False  # type: ignore[union-attr]
    assert rows(task_env, DeadLetter) == []
    # Its other pending delivery fails without a post.
    assert deliver(delivery_id=second[0], attempt=0)["skipped"] is True
    assert len(receiver.calls) == 1
    with session_scope(task_env) as session:
        later = session.get(OutboundDelivery, second[0])
        assert later is not None and later.status == "failed"
    # Disabled: no new deliveries.
    sent.clear()
    outbound.emit("sync.succeeded", {"sync_id": "s3"})
    assert sent == []


def test_errors_never_hold_the_url_and_redirects_are_not_followed(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], receiver: Any
) -> None:
    target = "https://receiver.example/hooks?token=Vq7Secret"
    redirected, _ = subscribe(task_env, box, ["sync.*"], target=target)
    refused, _ = subscribe(task_env, box, ["sync.*"], target="https://refused.example/x/Vq7Secret")
    receiver.add(responses.POST, target, status=302, headers={"Location": "https://elsewhere/"})
    receiver.add(
        responses.POST,
        "https://refused.example/x/Vq7Secret",
        body=requests.ConnectionError("refused"),
    )
    outbound.emit("sync.succeeded", {"sync_id": "s1"})
    for delivery_id, attempt in sent:
        deliver(delivery_id=delivery_id, attempt=attempt)
    assert [c.request.url for c in receiver.calls if "elsewhere" in c.request.url] == []
    one, two = delivery_of(task_env, redirected), delivery_of(task_env, refused)
    assert one.last_error == "the receiver answered HTTP 302 (a redirect, which is not followed)."
    assert two.last_error is not None and "could not be reached" in two.last_error
    assert "Vq7Secret" not in (one.last_error or "") + two.last_error


def test_a_spark_subscriber_runs_its_workflow_with_the_event_once_per_event(
    task_env: str, box: SecretBox, sent: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope(task_env) as session:
        spark = add_connection(
            session, box, provider="spark", name="spark", config={"base_url": "http://127.0.0.1:9"},
            secrets={"api_key": "sk"}, status="active",
        ).id  # fmt: skip
        subscriber = add_spark_subscriber(
            session, target=f"{spark}:wf-1", events=["connection.needs_reauth"]
        ).id
    calls: list[dict[str, Any]] = []

    def send(name: str, kwargs: dict[str, Any], queue: str) -> None:
        calls.append({"name": name, "queue": queue, **kwargs})

    monkeypatch.setattr(deliveries, "run_workflow", lambda done: run_workflow(done, send))
    outbound.emit("connection.needs_reauth", {"connection_id": "c1", "reason": "expired."})
    [(delivery_id, _)] = sent
    assert deliver(delivery_id=delivery_id, attempt=0)["status"] == "delivered"
    [event] = rows(task_env, OutboundEvent)
    [call] = calls
    assert (call["name"], call["queue"]) == ("integrations.call", "integrations.calls")
    assert call["connection_id"] == spark and call["action"] == "run_workflow"
    assert call["idempotency_key"] == f"event:{event.id}:{subscriber}"
    assert call["params"]["workflow_id"] == "wf-1"
    assert json.loads(call["params"]["input"]) == {
        "id": event.id,
        "type": "connection.needs_reauth",
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": {"connection_id": "c1", "reason": "expired."},
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "delivery_id must be"),
        ({"delivery_id": "\x00"}, "delivery_id must be"),
        ({"delivery_id": "d", "attempt": "1"}, "attempt must be"),
        ({"delivery_id": "d", "attempt": -1}, "attempt must be"),
        ({"delivery_id": "d", "url": "https://x"}, "takes no argument 'url'"),
    ],
)
def test_bad_kwargs_are_refused_in_one_sentence(
    task_env: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        deliver(**kwargs)
