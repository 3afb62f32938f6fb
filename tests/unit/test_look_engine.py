"""Look before resend in ``integrations.call``: a request in doubt (its worker lost
mid-request, or its answer lost) to Slack, which takes no idempotency key, is looked for in the
channel's history before it is sent again. Against this machine's Redis, a SQLite store and
Slack mocked with ``responses``; one delivery of a call at a time, as a worker runs it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from celery import Celery
from sqlalchemy import select

import spark_integrations.tasks.calls  # noqa: F401 - registers integrations.call
from spark_integrations.constants import REDIS_BUDGET_PREFIX, REDIS_CALL_JOURNAL_PREFIX, TASK_CALL
from spark_integrations.errors import CallFailedError
from spark_integrations.store import DeadLetter, SecretBox, session_scope
from spark_integrations.store.connections import add_connection
from spark_integrations.tasks import context
from tests.unit.task_env import sandbox_connection

pytestmark = pytest.mark.server

SLACK = "http://127.0.0.1:9/slack/api"
POST, HISTORY, AUTH = (
    SLACK + "/chat.postMessage",
    SLACK + "/conversations.history",
    SLACK + "/auth.test",
)
SANDBOX_MESSAGES = "http://127.0.0.1:9/api/v1/messages"
CHANNEL, BOT = "C012AB3CD", "B123ABC456"
IDENTITY = {"ok": True, "user_id": "U0KRQLJ9H", "bot_id": BOT, "team_id": "T012AB3C4"}
APP = Celery("unit-look", set_as_current=False)
APP.finalize()


class Deferred(Exception):
    """What ``task.retry`` raises here: the delivery ends, its message goes back to wait."""

    def __init__(self, countdown: float) -> None:
        super().__init__(countdown)
        self.countdown = countdown


@dataclass
class Fleet:
    store: str
    box: SecretBox
    sandbox: str
    slack: str

    def journal(self, task_id: str) -> dict[str, str]:
        raw = context.coordination_redis().hgetall(REDIS_CALL_JOURNAL_PREFIX + task_id)
        return {_text(k): _text(v) for k, v in raw.items()}

    def lost_worker(self, task_id: str, *, seconds_ago: float = 5.0) -> None:
        """The journal a delivery leaves when its worker dies with its request in flight."""
        context.coordination_redis().hset(
            REDIS_CALL_JOURNAL_PREFIX + task_id,
            mapping={"first_at": repr(time.time() - seconds_ago), "attempts": 1, "inflight": 1},
        )


def refill_budgets() -> None:
    """The fleet's rate budgets as after a quiet while: Slack's post tier (one a second)
    admits the next delivery at once, without this test waiting out the second."""
    redis_client = context.coordination_redis()
    for key in list(redis_client.scan_iter(f"{REDIS_BUDGET_PREFIX}*")):
        redis_client.delete(key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture
def fleet(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, redis_url: str, fernet_key: str
) -> Iterator[Fleet]:
    with sandbox_connection(
        monkeypatch, sqlite_url, redis_url, fernet_key, base_url="http://127.0.0.1:9/api",
        api_key="sk-unit-look",
    ) as (sandbox, box):  # fmt: skip
        slack = slack_connection(sqlite_url, box)
        monkeypatch.setattr(
            APP.tasks[TASK_CALL], "retry", lambda countdown, max_retries: Deferred(countdown)
        )
        yield Fleet(sqlite_url, box, sandbox, slack)


def slack_connection(store: str, box: SecretBox, **config: Any) -> str:
    with session_scope(store) as session:
        return add_connection(
            session, box, provider="slack", name=f"slack-{len(config)}",
            config={"base_url": SLACK, **config}, secrets={"bot_token": "xoxb-unit-look"},
            status="active",
        ).id  # fmt: skip


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def deliver(task_id: str, delivery: int = 0, **kwargs: Any) -> dict[str, Any]:
    """One delivery of a call's message (``retries``: the deliveries before it)."""
    task = APP.tasks[TASK_CALL]
    task.push_request(id=task_id, retries=delivery, called_directly=False)
    try:
        result: dict[str, Any] = task.run(**kwargs)
        return result
    finally:
        task.pop_request()


def post(fleet: Fleet, text: str = "deploy done", key: str | None = None) -> dict[str, Any]:
    call = {"connection_id": fleet.slack, "action": "post_message"}
    return {**call, "params": {"channel": CHANNEL, "text": text}, "idempotency_key": key}


def stored(ts: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"type": "message", "subtype": "bot_message", "bot_id": BOT, "text": text, "ts": ts,
            **fields}  # fmt: skip


def history(*messages: dict[str, Any], cursor: str = "") -> dict[str, Any]:
    return {"ok": True, "messages": list(messages), "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor}}  # fmt: skip


def calls_to(rsps: responses.RequestsMock, url: str) -> list[Any]:
    return [c for c in rsps.calls if c.request.url.split("?")[0] == url]


def letters(fleet: Fleet) -> list[DeadLetter]:
    with session_scope(fleet.store) as session:
        found = list(session.scalars(select(DeadLetter)).all())
        session.expunge_all()
        return found


# --- a worker lost with the request in flight ----------------------------------------------------


def test_a_lost_workers_post_found_in_the_history_succeeds_without_posting_again(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.post(AUTH, json=IDENTITY)
    someone = {"type": "message", "user": "W012A3CDE", "text": "deploy done", "ts": "3.000000"}
    mine = stored("2.000000", "deploy done")
    rsps.get(HISTORY, json=history(someone, stored("2.500000", "other"), mine))
    fleet.lost_worker("t-found")
    result = deliver("t-found", 1, **post(fleet, key="k-found"))
    assert result == {
        "ok": True,
        "data": {"ok": True, "channel": CHANNEL, "ts": "2.000000", "message": mine},
        "attempts": 2,
        "found": True,
    }
    assert calls_to(rsps, POST) == []
    [read] = calls_to(rsps, HISTORY)
    query = dict(parse_qsl(urlsplit(read.request.url).query))
    assert query["channel"] == CHANNEL and query["inclusive"] == "true"
    # The look reaches back to the first attempt less a margin for clocks.
    assert time.time() - 5 - 60 - 2 < float(query["oldest"]) < time.time() - 5 - 60 + 2
    assert fleet.journal("t-found") == {}
    # The key's record is settled: a repeat replays what was found, sending nothing.
    again = deliver("t-repeat", 0, **post(fleet, key="k-found"))
    assert again == {"ok": True, "data": result["data"], "attempts": 0, "replayed": True}
    assert len(rsps.calls) == 2


def test_a_lost_workers_post_absent_from_the_history_is_posted_once(
    fleet: Fleet, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One delivery at most: the look and the post admitted in one delivery count it once.
    monkeypatch.setenv("SPARK_INTEGRATIONS_MAX_DELIVERIES", "1")
    context.current_settings.cache_clear()
    rsps.post(AUTH, json=IDENTITY)
    rsps.get(HISTORY, json=history(stored("2.000000", "another text")))
    rsps.post(POST, json={"ok": True, "channel": CHANNEL, "ts": "9.000000"})
    fleet.lost_worker("t-absent")
    try:
        result = deliver("t-absent", 0, **post(fleet))
    except Deferred:  # Slack's post tier (1/s) had no slot left after the look's
        assert fleet.journal("t-absent")["inflight"] == "0", "absent: no doubt is left"
        refill_budgets()
        result = deliver("t-absent", 1, **post(fleet))
    assert result["ok"] and result["data"]["ts"] == "9.000000" and "found" not in result
    assert len(calls_to(rsps, POST)) == 1
    sent = json.loads(calls_to(rsps, POST)[0].request.body)
    assert sent == {"channel": CHANNEL, "text": "deploy done"}


def test_a_look_that_cannot_tell_ends_outcome_unknown_naming_where_it_looked(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.post(AUTH, json=IDENTITY)
    rsps.get(HISTORY, json={"ok": False, "error": "missing_scope", "needed": "channels:history"})
    fleet.lost_worker("t-unknown")
    with pytest.raises(CallFailedError) as info:
        deliver("t-unknown", 1, **post(fleet, key="k-unknown"))
    error = str(info.value)
    assert error.startswith("outcome_unknown: an earlier request may have reached slack")
    assert f"looked in the history of Slack channel {CHANNEL} since" in error
    assert "missing_scope" in error and "not sent again" in error
    assert calls_to(rsps, POST) == []
    [letter] = letters(fleet)
    assert letter.error == error and letter.task_id == "t-unknown"
    # The key's record holds the failure: a repeat is refused, not sent.
    with pytest.raises(CallFailedError, match="failed: outcome_unknown"):
        deliver("t-unknown-2", 0, **post(fleet, key="k-unknown"))
    assert calls_to(rsps, POST) == []


def test_a_thread_reply_cannot_be_looked_for_in_the_channels_history(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    fleet.lost_worker("t-thread")
    call = post(fleet)
    call["params"]["thread_ts"] = "1.000000"
    with pytest.raises(CallFailedError, match="a thread reply is not in it"):
        deliver("t-thread", 1, **call)
    assert len(rsps.calls) == 0


# --- an answer lost ----------------------------------------------------------------------------


def test_a_lost_answer_is_retried_with_its_mark_kept_and_the_next_delivery_looks(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    rsps.post(POST, body=requests.ConnectionError("connection reset by peer"))
    with pytest.raises(Deferred):
        deliver("t-lost", 0, **post(fleet, key="k-lost"))
    journal = fleet.journal("t-lost")
    assert journal["inflight"] == "1" and journal["attempts"] == "1"
    assert journal["failures"] == "1"
    # The next delivery looks (the message is there) and sends nothing.
    refill_budgets()
    rsps.post(AUTH, json=IDENTITY)
    rsps.get(HISTORY, json=history(stored("7.000000", "deploy done")))
    result = deliver("t-lost", 1, **post(fleet, key="k-lost"))
    assert result["found"] is True and result["data"]["ts"] == "7.000000"
    assert result["attempts"] == 2
    assert len(calls_to(rsps, POST)) == 1
    assert letters(fleet) == []


def test_a_look_that_fails_retriably_is_retried_then_given_up_within_the_policy(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    cid = slack_connection(fleet.store, fleet.box, retry_attempts=3)
    call = {**post(fleet), "connection_id": cid}
    rsps.post(AUTH, json=IDENTITY)
    rsps.get(HISTORY, json={"ok": False, "error": "service_unavailable"})
    fleet.lost_worker("t-retry")
    # Attempt 2 (the first look) and 3: each failing look is retried, the doubt kept.
    with pytest.raises(Deferred):
        deliver("t-retry", 1, **call)
    assert fleet.journal("t-retry")["inflight"] == "1"
    refill_budgets()
    with pytest.raises(CallFailedError) as info:
        deliver("t-retry", 2, **call)
    error = str(info.value)
    assert error.startswith("outcome_unknown: gave up after 3 attempts")
    assert "looking for it at slack failed" in error
    assert calls_to(rsps, POST) == []


# --- no look: unchanged ---------------------------------------------------------------------------


def test_an_action_without_a_look_still_ends_outcome_unknown_at_once(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    fleet.lost_worker("t-plain")
    call = {"connection_id": fleet.sandbox, "action": "create_message_unkeyed",
            "params": {"text": "hi"}}  # fmt: skip
    with pytest.raises(CallFailedError, match="outcome_unknown: an earlier delivery sent"):
        deliver("t-plain", 1, **call)
    assert len(rsps.calls) == 0
    rsps.post(SANDBOX_MESSAGES, body=requests.ConnectionError("reset"))
    with pytest.raises(CallFailedError, match="outcome_unknown: sandbox dropped"):
        deliver("t-plain-2", 0, **call)
    assert len(rsps.calls) == 1
