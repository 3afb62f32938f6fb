"""tasks.request: one guarded request for calls and sync pages, against this machine's Redis, a
SQLite store and a provider mocked with ``responses``.

The coordination client counts its round trips to Redis (each packet of commands it writes),
so the figures the README gives (two per call, three with an idempotency key, one per page) are
measured here, not assumed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import responses
from celery import Celery
from sqlalchemy import select

import spark_integrations.tasks.calls  # noqa: F401 - registers integrations.call
from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Budget
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.connectors.streams import Stream
from spark_integrations.constants import REDIS_BUDGET_PREFIX, REDIS_CALL_JOURNAL_PREFIX, TASK_CALL
from spark_integrations.coordination import Bucket
from spark_integrations.coordination import client as coordination_client
from spark_integrations.errors import CallFailedError
from spark_integrations.store import DeadLetter, SecretBox, session_scope
from spark_integrations.store.connections import add_connection, update_connection
from spark_integrations.tasks import clients, context
from spark_integrations.tasks.clients import breaker_for, coordination, target_for
from spark_integrations.tasks.lease import RunLedger
from spark_integrations.tasks.request import Defer, GiveUp, GuardedRequest, Retry
from tests.unit.task_env import sandbox_connection

pytestmark = pytest.mark.server

BASE = "http://127.0.0.1:9/api"
KEY = "sk-unit-guarded"
ITEMS = BASE + "/v1/items"
MESSAGES = BASE + "/v1/messages"


class CountingConnection(redis.Connection):
    """A Redis connection counting the packets it writes: one per round trip."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


@dataclass
class Fleet:
    store: str
    connection_id: str
    box: SecretBox

    @property
    def round_trips(self) -> int:
        return CountingConnection.sent

    def reset(self) -> None:
        CountingConnection.sent = 0


@pytest.fixture
def fleet(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, redis_url: str, fernet_key: str
) -> Iterator[Fleet]:
    def counting(url: str, **options: Any) -> coordination_client.CoordinationRedis:
        return coordination_client.connect(url, connection_class=CountingConnection, **options)

    monkeypatch.setattr(context, "connect", counting)
    with sandbox_connection(
        monkeypatch, sqlite_url, redis_url, fernet_key, base_url=BASE, api_key=KEY
    ) as (cid, box):
        yield Fleet(sqlite_url, cid, box)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


APP = Celery("unit-guarded", set_as_current=False)
APP.finalize()  # the fleet's shared tasks, registered on this app


def run_call(task_id: str, **kwargs: Any) -> dict[str, Any]:
    """``integrations.call``'s body, as a worker runs it for one delivery of one message."""
    task = APP.tasks[TASK_CALL]
    task.push_request(id=task_id, retries=0, called_directly=False)
    try:
        result: dict[str, Any] = task.run(**kwargs)
        return result
    finally:
        task.pop_request()


def warm(fleet: Fleet) -> None:
    """Load the scripts and connect, as the first call of a process does, then count afresh."""
    coordination()
    breaker_for(5, 30.0)
    fleet.reset()


# --- the round trips of a call -------------------------------------------------------------------


def test_a_call_takes_two_round_trips_and_three_with_a_key(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.post(MESSAGES, json={"id": "m1", "text": "hi"})
    warm(fleet)
    plain = run_call(
        "t-1", connection_id=fleet.connection_id, action="create_message", params={"text": "hi"}
    )
    assert plain == {"ok": True, "data": {"id": "m1", "text": "hi"}, "attempts": 1}
    assert fleet.round_trips == 2
    fleet.reset()
    keyed = run_call(
        "t-2",
        connection_id=fleet.connection_id,
        action="create_message",
        params={"text": "hi"},
        idempotency_key="k-1",
    )
    assert keyed["ok"] is True and keyed["attempts"] == 1
    assert fleet.round_trips == 3
    # A repeat of the key is answered from its record: one round trip, no request.
    fleet.reset()
    again = run_call(
        "t-3",
        connection_id=fleet.connection_id,
        action="create_message",
        params={"text": "hi"},
        idempotency_key="k-1",
    )
    assert again == {"ok": True, "data": keyed["data"], "attempts": 0, "replayed": True}
    assert fleet.round_trips == 1
    assert len(rsps.calls) == 2
    assert rsps.calls[1].request.headers["Idempotency-Key"] == "k-1"


def test_a_call_refused_for_good_names_connector_status_and_not_applied(
    fleet: Fleet, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.post(MESSAGES, status=422, body="text too long")
    with (
        caplog.at_level(logging.ERROR, logger="spark_integrations.tasks"),
        pytest.raises(CallFailedError) as info,
    ):
        run_call("t-4", connection_id=fleet.connection_id, action="create_message",
                 params={"text": "hi"})  # fmt: skip
    error = str(info.value)
    assert error.endswith("[sandbox: status 422, not applied]")
    assert len(rsps.calls) == 1
    # The dead letter and the log line carry the same fields.
    with session_scope(fleet.store) as session:
        (letter,) = session.scalars(select(DeadLetter)).all()
        assert (letter.task_id, letter.error, letter.attempts) == ("t-4", error, 1)
        fields = (letter.id, letter.task, letter.connection_id, letter.action)
    (line,) = [r.getMessage() for r in caplog.records if "dead letter" in r.getMessage()]
    assert line == (
        f"dead letter {fields[0]}: task={fields[1]} task_id='t-4' "
        f"connection_id={fields[2]!r} action={fields[3]!r} attempts=1 error={error}"
    )


# --- pages -----------------------------------------------------------------------------------


def page_request(fleet: Fleet, failures: int = 0) -> tuple[GuardedRequest, Stream]:
    target = target_for(fleet.connection_id)
    guarded = GuardedRequest(target, "run-1", RunLedger(failures, None), horizon=10.0)
    return guarded, target.connector.get_stream("items")


def read(guarded: GuardedRequest, stream: Stream, position: Any = None) -> Any:
    answer = guarded.send(stream, lambda c: c.perform_page(stream, position=position))
    guarded.succeeded(None, now=False)
    return answer.value


def test_a_page_takes_one_round_trip_its_breaker_success_riding_on_the_next(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    for cursor, following in ((None, "c2"), ("c2", "c3"), ("c3", None)):
        rsps.get(
            ITEMS,
            json={"data": [{"id": cursor or "c1"}], "next_cursor": following},
            match=[responses.matchers.query_param_matcher(
                {"limit": "100", **({"cursor": cursor} if cursor else {})}
            )],
        )  # fmt: skip
    guarded, stream = page_request(fleet)
    breaker = breaker_for(5, 30.0)
    breaker.record_failure(guarded.breaker_keys, "someone-else")  # a failure elsewhere
    warm(fleet)
    position = None
    for expected in (1, 2, 3):
        page = read(guarded, stream, position)
        position = page.position
        assert fleet.round_trips == expected
    assert page.finished
    # The first page's success rode on the second page's admission: the failure is forgotten.
    assert breaker.state(guarded.breaker_keys[1])["failures"] == 0
    guarded.flush()
    assert guarded.pending_success is None


def test_a_page_is_deferred_by_an_open_breaker(fleet: Fleet, rsps: responses.RequestsMock) -> None:
    guarded, stream = page_request(fleet)
    breaker = breaker_for(5, 30.0)
    for n in range(5):
        breaker.record_failure(guarded.breaker_keys, f"failing-{n}")
    with pytest.raises(Defer) as info:
        read(guarded, stream)
    assert info.value.reason == "circuit open" and 0 < info.value.wait <= 30.0
    assert len(rsps.calls) == 0


def test_a_page_learns_the_providers_limit_from_its_headers(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.get(ITEMS, json={"data": [], "next_cursor": None}, headers={"X-RateLimit-Limit": "7"})
    guarded, stream = page_request(fleet)
    read(guarded, stream)
    budget, _ = coordination()
    assert budget.effective_rate(Bucket(f"sandbox:{fleet.connection_id}", 100.0)) == 7.0


def test_a_429_on_a_page_pauses_the_budget_and_is_retried_after_retry_after(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.get(ITEMS, status=429, headers={"Retry-After": "3"}, body="slow down")
    guarded, stream = page_request(fleet)
    with pytest.raises(Retry) as info:
        read(guarded, stream)
    assert 3.0 <= info.value.wait <= 3.3
    learned = context.coordination_redis().hgetall(
        f"{REDIS_BUDGET_PREFIX}learned:sandbox:{fleet.connection_id}"
    )
    assert "pause_until" in learned
    # The provider is up: a 429 does not count against the breaker.
    assert breaker_for(5, 30.0).state(guarded.breaker_keys[1])["failures"] == 0


def test_a_page_gives_up_once_its_retry_policy_is_spent(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.get(ITEMS, status=503, body="down")
    guarded, stream = page_request(fleet, failures=7)  # the 8th attempt is the policy's last
    with pytest.raises(GiveUp) as info:
        read(guarded, stream)
    assert "gave up after 8 attempts" in info.value.error and "retry budget" in info.value.error
    assert info.value.error.endswith("[sandbox: status 503, not applied]")


def test_a_page_read_after_failures_starts_the_retry_policy_afresh(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.get(ITEMS, status=502, body="bad gateway")
    rsps.get(ITEMS, json={"data": [], "next_cursor": None})
    guarded, stream = page_request(fleet, failures=3)
    with pytest.raises(Retry):
        read(guarded, stream)
    ledger = guarded.ledger
    assert isinstance(ledger, RunLedger) and ledger.failures == 4
    assert read(guarded, stream).finished
    assert ledger.failures == 0 and ledger.failing_since is None


def test_a_401_reads_the_connection_again_and_sends_once_more(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    guarded, stream = page_request(fleet)
    with session_scope(fleet.store) as session:
        update_connection(session, fleet.box, fleet.connection_id, secrets={"api_key": "sk-new"})
    rsps.get(ITEMS, status=401, body="who are you", match=[
        responses.matchers.header_matcher({"Authorization": f"Bearer {KEY}"})
    ])  # fmt: skip
    rsps.get(ITEMS, json={"data": [], "next_cursor": None}, match=[
        responses.matchers.header_matcher({"Authorization": "Bearer sk-new"})
    ])  # fmt: skip
    assert read(guarded, stream).finished
    assert [c.response.status_code for c in rsps.calls] == [401, 200]


def test_a_second_401_gives_up(fleet: Fleet, rsps: responses.RequestsMock) -> None:
    rsps.get(ITEMS, status=401, body="no")
    guarded, stream = page_request(fleet)
    with pytest.raises(GiveUp) as info:
        read(guarded, stream)
    assert "refused the credentials" in info.value.error
    assert len(rsps.calls) == 1  # the same key, unchanged in the store: nothing new to try


# --- budgets chosen per request ------------------------------------------------------------


class TieredSandbox(SandboxConnector):
    """Reads of one item draw from a budget of their own."""

    def budgets(self, operation: Action | Stream | None = None) -> tuple[Budget, ...]:
        if isinstance(operation, Action) and operation.name == "get_item":
            return (Budget(f"{self.name}:{self.scope}:reads", 1000.0),)
        return super().budgets(operation)


def test_the_connector_chooses_the_budget_of_each_request(
    fleet: Fleet, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clients, "get_connector", lambda name: TieredSandbox)
    rsps.get(ITEMS + "/i1", json={"id": "i1"})
    target = target_for(fleet.connection_id)
    guarded = GuardedRequest(target, "t-5", RunLedger(0, None), horizon=10.0)
    action = target.connector.get_action("get_item")
    guarded.send(action, lambda c: c.perform_action(action, {"id": "i1"}))
    keys = set(context.coordination_redis().scan_iter(f"{REDIS_BUDGET_PREFIX}tat:*"))
    assert keys == {f"{REDIS_BUDGET_PREFIX}tat:sandbox:{fleet.connection_id}:reads"}


# --- a token endpoint that keeps failing ---------------------------------------------------

TOKEN = "http://127.0.0.1:9/api/oauth/token"
WINDOW = 60.0


class Deferred(Exception):
    """What ``task.retry`` raises here: the delivery ends, its message goes back to wait."""

    def __init__(self, countdown: float) -> None:
        super().__init__(countdown)
        self.countdown = countdown


def oauth_connection(fleet: Fleet) -> str:
    """A client-credentials connection of the sandbox with a retry window of WINDOW seconds."""
    with session_scope(fleet.store) as session:
        return add_connection(
            session, fleet.box, provider="sandbox", name="oauth",
            config={"base_url": BASE, "client_id": "app", "grant_type": "client_credentials",
                    "retry_window": WINDOW},
            secrets={"client_secret": "cs-unit"}, status="active",
        ).id  # fmt: skip


def deliver(task_id: str, delivery: int, **kwargs: Any) -> dict[str, Any]:
    """One delivery of a call's message (``retries``: the deliveries before it)."""
    task = APP.tasks[TASK_CALL]
    task.push_request(id=task_id, retries=delivery, called_directly=False)
    try:
        result: dict[str, Any] = task.run(**kwargs)
        return result
    finally:
        task.pop_request()


def test_a_call_waiting_for_a_token_gives_up_once_its_window_is_spent_across_deliveries(
    fleet: Fleet, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rsps.post(TOKEN, status=503, body="token service down")
    cid = oauth_connection(fleet)
    monkeypatch.setattr(
        APP.tasks[TASK_CALL], "retry", lambda countdown, max_retries: Deferred(countdown)
    )
    call = {"connection_id": cid, "action": "create_message", "params": {"text": "hi"}}
    journal = f"{REDIS_CALL_JOURNAL_PREFIX}t-token"
    redis_client = context.coordination_redis()
    clocks = []
    for delivery in range(3):
        with pytest.raises(Deferred):
            deliver("t-token", delivery, **call)
        clocks.append(redis_client.hget(journal, "first_at"))
    assert len(rsps.calls) == 3  # one token request a delivery, never the API
    # The window runs across deliveries: move its start back past the window, as if the
    # deliveries so far had taken that long; the next one gives up.
    redis_client.hset(journal, "first_at", repr(time.time() - WINDOW - 1))
    with pytest.raises(CallFailedError) as info:
        deliver("t-token", 3, **call)
    assert str(info.value).startswith("gave up waiting for a usable OAuth token")
    with session_scope(fleet.store) as session:
        (letter,) = session.scalars(select(DeadLetter)).all()
        assert (letter.task_id, letter.error) == ("t-token", str(info.value))
    assert not redis_client.exists(journal)
    # Every delivery read the clock the first one started; none restarted it.
    assert clocks[0] is not None and clocks == [clocks[0]] * 3


def test_a_page_waiting_for_a_token_starts_the_runs_clock_and_gives_up_after_the_window(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.post(TOKEN, status=503, body="token service down")
    target = target_for(oauth_connection(fleet))
    stream = target.connector.get_stream("items")
    ledger = RunLedger(0, None)
    with pytest.raises(Defer) as deferred:
        read(GuardedRequest(target, "run-2", ledger, horizon=10.0), stream)
    assert deferred.value.reason == "token refresh"
    assert ledger.failing_since is not None  # the clock a continuation's kwargs carry on
    # A continuation of the run, handed the clock WINDOW + 1 seconds later, gives up.
    later = RunLedger(ledger.failures, ledger.failing_since - WINDOW - 1)
    with pytest.raises(GiveUp) as info:
        read(GuardedRequest(target, "run-2", later, horizon=10.0), stream)
    assert info.value.error.startswith("gave up waiting for a usable OAuth token")
    assert len(rsps.calls) == 2 and all(c.request.url == TOKEN for c in rsps.calls)
