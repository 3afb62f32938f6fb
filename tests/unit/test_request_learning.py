"""tasks.request learns from rate-limit headers under the connector's own names: an answer
saying the provider's window is spent (remaining 0 with a reset) pauses the budget until the
reset, so the fleet waits instead of earning a 429; a route tier learns under the provider's
bucket. Against this machine's Redis, a SQLite store and a provider mocked with ``responses``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.manifest import load_manifest
from spark_integrations.constants import REDIS_BUDGET_PREFIX
from spark_integrations.tasks import clients, context
from spark_integrations.tasks.clients import target_for
from spark_integrations.tasks.lease import RunLedger
from spark_integrations.tasks.request import MAX_SPENT_PAUSE, GiveUp, GuardedRequest, Retry
from tests.unit.task_env import sandbox_connection

pytestmark = pytest.mark.server

BASE = "http://127.0.0.1:9/api"
KEY = "sk-unit-learning"
ITEMS = BASE + "/v1/items"
MESSAGES = BASE + "/v1/messages"

MANIFEST = """\
name: learner
base_url: http://127.0.0.1:9/api
auth: {bearer: {secret: api_key}}
limits:
  rate_limit: 100
  headers: {remaining: X-RateLimit-Remaining, reset_after: X-RateLimit-Reset-After,
            bucket: X-RateLimit-Bucket}
  tiers: {routes: {rate: 50, per: route}}
actions:
  - {name: post, method: POST, path: /v1/messages, params: {text: string}, budget: routes}
streams:
  - {name: items, path: /v1/items, primary_key: id, records: data, pagination: {style: cursor}}
"""
# Without declared header names: the common X-RateLimit-* ones (GitHub's primary limit).
PLAIN = MANIFEST.replace("name: learner", "name: plain").replace(
    """  headers: {remaining: X-RateLimit-Remaining, reset_after: X-RateLimit-Reset-After,
            bucket: X-RateLimit-Bucket}
""",
    "",
)


def connector(tmp_path: Path, text: str) -> type[Connector]:
    path = tmp_path / "learner.yaml"
    path.write_text(text, encoding="utf-8")
    return load_manifest(path)


@pytest.fixture
def connection(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, redis_url: str, fernet_key: str
) -> Iterator[str]:
    with sandbox_connection(
        monkeypatch, sqlite_url, redis_url, fernet_key, base_url=BASE, api_key=KEY
    ) as (cid, _):
        yield cid


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def use(monkeypatch: pytest.MonkeyPatch, cls: type[Connector]) -> None:
    monkeypatch.setattr(clients, "get_connector", lambda name: cls)


def paused_for(key: str) -> float:
    """Seconds the budget ``key`` stays paused from now (0 when it is not paused)."""
    redis = context.coordination_redis()
    learned = redis.hgetall(f"{REDIS_BUDGET_PREFIX}learned:{key}")
    seconds, micros = redis.time()
    now_us = int(seconds) * 1_000_000 + int(micros)
    until = int(learned.get("pause_until", 0) or 0)
    return max(0.0, (until - now_us) / 1_000_000)


def read_page(cid: str) -> Any:
    target = target_for(cid)
    guarded = GuardedRequest(target, "run-1", RunLedger(0, None), horizon=10.0)
    stream = target.connector.get_stream("items")
    answer = guarded.send(stream, lambda c: c.perform_page(stream))
    guarded.succeeded(None, now=False)
    guarded.flush()
    return answer.value


def test_a_spent_window_pauses_the_budget_until_its_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: str, rsps: responses.RequestsMock
) -> None:
    use(monkeypatch, connector(tmp_path, PLAIN))
    reset = int(time.time()) + 40  # epoch seconds, as GitHub sends it
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    rsps.get(ITEMS, json={"data": [], "next_cursor": None}, headers=headers)
    read_page(connection)
    assert 30.0 < paused_for(f"plain:{connection}") <= 41.0


def test_remaining_requests_pause_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: str, rsps: responses.RequestsMock
) -> None:
    use(monkeypatch, connector(tmp_path, PLAIN))
    headers = {"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": str(int(time.time()) + 40)}
    rsps.get(ITEMS, json={"data": [], "next_cursor": None}, headers=headers)
    read_page(connection)
    assert paused_for(f"plain:{connection}") == 0.0


def test_a_reset_beyond_an_hour_is_not_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: str, rsps: responses.RequestsMock
) -> None:
    use(monkeypatch, connector(tmp_path, PLAIN))
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 86_400)}
    rsps.get(ITEMS, json={"data": [], "next_cursor": None}, headers=headers)
    read_page(connection)
    assert MAX_SPENT_PAUSE - 5 < paused_for(f"plain:{connection}") <= MAX_SPENT_PAUSE


def test_a_spent_bucket_pauses_the_buckets_budget_read_under_declared_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: str, rsps: responses.RequestsMock
) -> None:
    use(monkeypatch, connector(tmp_path, MANIFEST))
    headers = {
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset-After": "12.5",
        "X-RateLimit-Bucket": "b4d5",
    }
    rsps.post(MESSAGES, json={"id": "m1"}, headers=headers)
    target = target_for(connection)
    guarded = GuardedRequest(target, "t-1", RunLedger(0, None), horizon=10.0)
    action = target.connector.get_action("post")
    guarded.send(action, lambda c: c.perform_action(action, {"text": "hi"}))
    assert 11.0 < paused_for(f"learner:{connection}:route:b4d5") <= 12.5
    # The connection's own budget is not paused; the route's name is, for the fleet's other
    # processes that have not met the bucket yet and still draw from it.
    assert paused_for(f"learner:{connection}") == 0.0
    assert 11.0 < paused_for(f"learner:{connection}:route:post") <= 12.5
    # The next request of that route draws from the bucket's budget.
    assert target.client.budgets(action)[-1].key == f"learner:{connection}:route:b4d5"


@pytest.mark.parametrize("retry_after", ["86400", "1e12"])
def test_a_429_asking_for_more_than_an_hour_pauses_the_budget_an_hour_at_most(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connection: str,
    rsps: responses.RequestsMock,
    retry_after: str,
) -> None:
    # A provider's bogus wait must not stall the connection for days (or for ever).
    use(monkeypatch, connector(tmp_path, PLAIN))
    rsps.get(ITEMS, status=429, json={}, headers={"Retry-After": retry_after})
    with pytest.raises((Retry, GiveUp)):
        read_page(connection)
    assert MAX_SPENT_PAUSE - 5 < paused_for(f"plain:{connection}") <= MAX_SPENT_PAUSE


def test_a_spent_bucket_holds_back_a_process_that_has_not_met_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: str, rsps: responses.RequestsMock
) -> None:
    # The bucket a route draws from is learned per process: one whose client already met the
    # bucket (its second answer says the window is spent) still pauses the route's own name,
    # which a process that has not met the bucket yet draws from.
    fast = MANIFEST.replace("rate_limit: 100", "rate_limit: 100000")
    fast = fast.replace("rate: 50", "rate: 100000")
    use(monkeypatch, connector(tmp_path, fast))
    spent = {
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset-After": "20",
        "X-RateLimit-Bucket": "b4d5",
    }
    rsps.post(MESSAGES, json={"id": "m1"}, headers={**spent, "X-RateLimit-Remaining": "4"})
    rsps.post(MESSAGES, json={"id": "m2"}, headers=spent)
    target = target_for(connection)
    action = target.connector.get_action("post")
    for n in (1, 2):
        guarded = GuardedRequest(target, f"t-{n}", RunLedger(0, None), horizon=10.0)
        guarded.send(action, lambda c: c.perform_action(action, {"text": "hi"}))
    assert target.client.budgets(action)[-1].key == f"learner:{connection}:route:b4d5"
    fresh = target.connector({"base_url": BASE}, {"api_key": KEY}, scope=connection)
    unaware = fresh.budgets(action)[-1].key
    assert unaware == f"learner:{connection}:route:post"
    assert 18.0 < paused_for(unaware) <= 20.0


def test_a_token_bucket_provider_at_its_limit_is_not_paused_until_it_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: str, rsps: responses.RequestsMock
) -> None:
    # A token bucket (pause_when_spent: false, as the sandbox's) answers remaining 0 after
    # nearly every request at its limit, with a reset when it is full again: pausing until
    # then would idle most of the budget the fleet's own pacing already keeps under.
    bucket = PLAIN.replace("  rate_limit: 100\n", "  rate_limit: 100\n  pause_when_spent: false\n")
    use(monkeypatch, connector(tmp_path, bucket))
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 1)}
    rsps.get(ITEMS, json={"data": [], "next_cursor": None}, headers=headers)
    read_page(connection)
    assert paused_for(f"plain:{connection}") == 0.0


def test_the_sandbox_is_a_token_bucket() -> None:
    from spark_integrations.connectors import get_connector

    assert get_connector("sandbox").pause_when_spent is False
    assert get_connector("github").pause_when_spent is True
