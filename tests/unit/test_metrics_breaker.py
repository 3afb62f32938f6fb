"""Breaker transitions are counted where they happen (the scripts say which keys moved), and the
views operators read (coordination.views) say what breakers and budgets hold."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from spark_integrations import metrics
from spark_integrations.coordination import (
    BreakerPolicy,
    Bucket,
    RedisCircuitBreaker,
    RedisRateBudget,
)
from spark_integrations.coordination.views import breaker_views, budget_views

pytestmark = pytest.mark.server  # a real Redis (and PostgreSQL, RabbitMQ) of the fixtures

KEYS = ["sandbox", "sandbox:c1"]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    metrics.configure(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        metrics.configure(None)
        client.close()


def transitions(client: redis.Redis) -> dict[tuple[str, str], float]:
    assert metrics.flush()
    return {
        (labels["breaker"], labels["state"]): value
        for labels, value in metrics.read(client)["breaker_transitions"]
    }


def half_open(breaker: RedisCircuitBreaker, key: str) -> None:
    deadline = time.monotonic() + 10
    while breaker.state(key)["state"] != "half_open":
        assert time.monotonic() < deadline, breaker.state(key)
        time.sleep(0.01)


def test_opening_reopening_and_closing_are_counted_per_key(client: redis.Redis) -> None:
    breaker = RedisCircuitBreaker(client, BreakerPolicy(fail_max=2, reset_timeout=0.05))
    breaker.record_failure(KEYS, "a")
    assert transitions(client) == {}
    breaker.record_failure(KEYS, "b")  # both keys open
    breaker.record_failure(KEYS, "c")  # open already: counted as a failure, no transition
    assert transitions(client) == {("sandbox", "open"): 1, ("sandbox:c1", "open"): 1}
    half_open(breaker, "sandbox")
    half_open(breaker, "sandbox:c1")
    assert breaker.admit(KEYS, "probe").probe
    breaker.record_failure(KEYS, "probe")  # the probe failed: both reopen
    assert transitions(client) == {("sandbox", "open"): 2, ("sandbox:c1", "open"): 2}
    half_open(breaker, "sandbox")
    half_open(breaker, "sandbox:c1")
    assert breaker.admit(KEYS, "probe-2").probe
    breaker.record_success(KEYS, "someone-else")  # not the probe: closes nothing
    breaker.record_success(KEYS, "probe-2")
    assert transitions(client) == {
        ("sandbox", "open"): 2,
        ("sandbox:c1", "open"): 2,
        ("sandbox", "closed"): 1,
        ("sandbox:c1", "closed"): 1,
    }


def test_a_success_on_a_pipeline_is_counted_from_its_reply(client: redis.Redis) -> None:
    breaker = RedisCircuitBreaker(client, BreakerPolicy(fail_max=1, reset_timeout=0.05))
    breaker.record_failure(["sandbox:c1"], "a")
    half_open(breaker, "sandbox:c1")
    assert breaker.admit(["sandbox:c1"], "probe").probe
    pipe = client.pipeline(transaction=False)
    closed = breaker.record_success_later(pipe, ["sandbox:c1"], "probe")
    pipe.get("unrelated")
    replies = pipe.execute()
    assert transitions(client) == {("sandbox:c1", "open"): 1}  # nothing until the reply is read
    closed(replies[0])
    assert transitions(client) == {("sandbox:c1", "open"): 1, ("sandbox:c1", "closed"): 1}
    assert breaker.state("sandbox:c1")["state"] == "closed"


def test_breaker_views_show_each_key_with_state(client: redis.Redis) -> None:
    breaker = RedisCircuitBreaker(client, BreakerPolicy(fail_max=2, reset_timeout=30))
    assert breaker_views(client) == []
    breaker.record_failure(["sandbox"], "a")
    breaker.record_failure(["sandbox:c1"], "a")
    breaker.record_failure(["sandbox:c1"], "b")
    client.set("spark-int:breaker:state:", "an odd key of no breaker")
    views = {v.key: v for v in breaker_views(client)}
    assert set(views) == {"sandbox", "sandbox:c1"}
    assert views["sandbox"].state == "closed" and views["sandbox"].failures == 1
    assert views["sandbox:c1"].state == "open" and views["sandbox:c1"].failures == 2
    assert 25 < views["sandbox:c1"].open_for <= 30
    quick = RedisCircuitBreaker(client, BreakerPolicy(fail_max=1, reset_timeout=0.05))
    quick.record_failure(["github"], "a")
    half_open(quick, "github")
    assert {v.key: v.state for v in breaker_views(client)}["github"] == "half_open"


def test_budget_views_show_backlog_learned_rate_and_pause(client: redis.Redis) -> None:
    budget = RedisRateBudget(client)
    assert budget_views(client) == []
    bucket = Bucket("sandbox:c1", rate=10, burst=0)
    grants = [budget.acquire([bucket]) for _ in range(5)]
    assert grants[0].allowed and not all(g.allowed for g in grants)
    budget.learn("sandbox:other", rate=2.5, pause=20)
    client.hset("spark-int:budget:tat:odd", "a", "hash where a time belongs")
    views = {v.bucket: v for v in budget_views(client)}
    assert set(views) == {"sandbox:c1", "sandbox:other"}
    assert 0 < views["sandbox:c1"].backlog <= 0.6  # four slots of 0.1 s handed out ahead
    assert views["sandbox:c1"].learned_rate is None and views["sandbox:c1"].paused_for == 0
    assert views["sandbox:other"].learned_rate == 2.5
    assert 15 < views["sandbox:other"].paused_for <= 20
    assert 15 < views["sandbox:other"].backlog <= 20  # the pause pushed its schedule too
