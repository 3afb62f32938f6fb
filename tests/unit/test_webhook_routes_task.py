"""What ``integrations.process_webhook`` decides, run in this process against a stand-in of the
task (its request and its sends): failures retried with backoff and the event released, the
last one ``failed`` with one dead letter, a redelivery answering the same, a dead letter's
replay processing it again; bad kwargs refused with a dead letter. (Real workers run it in
tests/integration/test_webhook_processing.py.)"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kombu.exceptions import OperationalError
from sqlalchemy import select

from spark_integrations.errors import UsageError, WebhookFailedError
from spark_integrations.store import DeadLetter, SyncDefinition, WebhookEvent, session_scope
from spark_integrations.tasks.webhooks import MAX_ATTEMPTS, _fail_poisoned, process
from spark_integrations.webhooks.routes import add_route
from tests.unit.task_env import task_env_fixture

__all__ = ["task_env_fixture"]


class Retried(Exception):
    """What the stand-in's retry() returns for the task to raise."""

    def __init__(self, countdown: float) -> None:
        super().__init__(countdown)
        self.countdown = countdown


class StandIn:
    """The parts of a bound Celery task that processing uses."""

    name = "integrations.process_webhook"

    def __init__(self, task_id: str, retries: int = 0, *, broken: bool = False) -> None:
        self.request = SimpleNamespace(id=task_id, retries=retries)
        self.sent: list[tuple[str, dict[str, Any], str]] = []
        self.broken = broken
        self.app = SimpleNamespace(send_task=self.send_task)

    def send_task(self, name: str, *, kwargs: dict[str, Any], queue: str) -> Any:
        if self.broken:
            raise OperationalError("Error 111 connecting to redis://:pw@127.0.0.1:1/0.")
        self.sent.append((name, kwargs, queue))
        return SimpleNamespace(id=f"sent-{len(self.sent)}")

    def retry(self, *, countdown: float, max_retries: Any) -> Retried:
        assert max_retries is None
        return Retried(countdown)


def run(event_id: Any, task: StandIn, **unknown: Any) -> dict[str, Any]:
    return process(task, event_id, unknown)  # type: ignore[arg-type]


@pytest.fixture
def routed(task_env: str, connection_id: str, sync_id: str) -> str:
    """An event of the sandbox connection with one route to its sync; returns its id."""
    with session_scope(task_env) as session:
        add_route(
            session, connection_id=connection_id, event_type="item", kind="sync", sync_id=sync_id
        )
        event = WebhookEvent(
            provider="sandbox", connection_id=connection_id, delivery_id="msg_1",
            event_type="item.updated", payload={"id": "x"},
        )  # fmt: skip
        session.add(event)
        session.flush()
        return event.id


def event(url: str, event_id: str) -> WebhookEvent:
    with session_scope(url) as session:
        found = session.get(WebhookEvent, event_id)
        assert found is not None
        session.expunge(found)
        return found


def letters(url: str) -> list[DeadLetter]:
    with session_scope(url) as session:
        found = list(session.scalars(select(DeadLetter)))
        session.expunge_all()
        return found


def test_a_processed_event_sends_its_routes_once_and_answers_the_same_after(
    task_env: str, routed: str, sync_id: str
) -> None:
    task = StandIn("t1")
    answer = run(routed, task)
    assert task.sent == [("integrations.sync", {"sync_id": sync_id}, "integrations.syncs")]
    assert answer["ok"] is True and answer["event_id"] == routed and answer["routes"] == 1
    assert answer["runs"][0]["task_id"] == "sent-1"
    stored = event(task_env, routed)
    assert (stored.status, stored.attempts, stored.error) == ("processed", 1, None)
    assert {"ok": True, "event_id": routed, **(stored.result or {})} == answer
    again = StandIn("t2")
    assert run(routed, again) == answer and again.sent == []


def test_a_failure_releases_the_event_and_retries_until_the_budget_ends(
    task_env: str, routed: str
) -> None:
    task = StandIn("t1", broken=True)
    with pytest.raises(Retried) as first:
        run(routed, task)
    assert 0 <= first.value.countdown <= 0.5  # full jitter over the first backoff step
    stored = event(task_env, routed)
    assert stored.status == "received" and stored.enqueued_at is not None
    assert stored.error is not None and "OperationalError" in stored.error
    assert "pw@" not in stored.error  # a broker URL's password is masked
    assert (stored.result or {})["failures"] == 1
    for retries in range(1, MAX_ATTEMPTS - 1):
        with pytest.raises(Retried):
            run(routed, StandIn("t1", retries, broken=True))
    assert letters(task_env) == []
    with pytest.raises(WebhookFailedError) as last:
        run(routed, StandIn("t1", MAX_ATTEMPTS - 1, broken=True))
    assert f"failed {MAX_ATTEMPTS} times" in str(last.value)
    stored = event(task_env, routed)
    assert (stored.status, stored.error) == ("failed", str(last.value))
    (letter,) = letters(task_env)
    assert (letter.task, letter.task_id, letter.kwargs) == (
        "integrations.process_webhook",
        "t1",
        {"event_id": routed},
    )
    assert letter.error == str(last.value) and letter.attempts == MAX_ATTEMPTS

    # Its message delivered again: the same failure, no second letter.
    with pytest.raises(WebhookFailedError, match="failed 8 times"):
        run(routed, StandIn("t1", MAX_ATTEMPTS - 1))
    assert len(letters(task_env)) == 1
    # The dead letter replayed (a new task id): processed, with the same route keys.
    replayed = StandIn("replay")
    assert run(routed, replayed)["routes"] == 1 and len(replayed.sent) == 1
    assert event(task_env, routed).status == "processed"


def test_an_event_another_task_holds_is_looked_at_again_later(
    task_env: str, routed: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARK_INTEGRATIONS_REDIS_URL", redis_url)
    from spark_integrations.tasks import context

    context.current_settings.cache_clear()
    context._redis = None
    with session_scope(task_env) as session:
        from spark_integrations.webhooks.processing import claim_event

        claim_event(session, routed, task_id="holder", retries=0, stale_after=900)
    waiting = StandIn("t2")
    with pytest.raises(Retried) as later:
        run(routed, waiting)
    assert 0.5 <= later.value.countdown <= 30 and waiting.sent == []
    assert event(task_env, routed).status == "processing"
    context._redis = None


def test_a_paused_routed_sync_is_skipped_and_said(task_env: str, routed: str, sync_id: str) -> None:
    with session_scope(task_env) as session:
        sync = session.get(SyncDefinition, sync_id)
        assert sync is not None
        sync.enabled = False
    task = StandIn("t1")
    answer = run(routed, task)
    assert task.sent == [] and answer["routes"] == 1
    assert answer["skipped"][0]["reason"] == f"sync {sync_id} is paused."


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"event_id": "x", "bogus": 1}, "takes no argument 'bogus'; it takes event_id"),
        ({"event_id": None}, "event_id must be a non-empty string"),
        ({"event_id": "a\x00b"}, "event_id must be a non-empty string"),
        ({"event_id": 7}, "event_id must be a non-empty string"),
        ({"event_id": "no-such-event"}, "no webhook event 'no-such-event'"),
    ],
)
def test_bad_kwargs_fail_at_once_with_a_dead_letter(
    task_env: str, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(UsageError, match=words.replace("(", r"\(")) as refused:
        given = dict(kwargs)
        run(given.pop("event_id"), StandIn("t-bad"), **given)
    (letter,) = letters(task_env)
    assert letter.task == "integrations.process_webhook" and letter.error == str(refused.value)
    assert letter.task_id == "t-bad"
    assert "\n" not in letter.error


def test_a_poison_message_fails_its_event_and_a_replay_processes_it(
    task_env: str, routed: str
) -> None:
    _fail_poisoned(routed, "t1", "delivered 4 times and its worker died each time.")
    stored = event(task_env, routed)
    assert (stored.status, stored.error) == (
        "failed",
        "delivered 4 times and its worker died each time.",
    )
    # The sweep sends received events only; the same message again answers the failure.
    with pytest.raises(WebhookFailedError, match="worker died"):
        run(routed, StandIn("t1"))
    assert run(routed, StandIn("dlq-replay"))["routes"] == 1
