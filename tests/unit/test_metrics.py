"""The fleet's counters: the registry, refusals, the buffer and its flush to a real Redis, forks."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from spark_integrations import metrics
from spark_integrations.metrics_families import FAMILIES, PREFIX

pytestmark = pytest.mark.server  # a real Redis (and PostgreSQL, RabbitMQ) of the fixtures

# Prometheus's data model: metric and label names.
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: Labels that would be unbounded (one series per record, task, run or event): never declared.
UNBOUNDED = {"id", "task_id", "run_id", "event_id", "record_id", "delivery_id", "key"}


@pytest.fixture
def counting(redis_url: str) -> Iterator[redis.Redis]:
    """This process counting into the test's Redis database; a client of it. What an earlier
    test of this process counted (an in-process command configures the metrics) is dropped."""
    metrics.configure(None)
    metrics.configure(redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        metrics.configure(None)  # returns once a send in progress has ended
        client.close()


def totals(client: redis.Redis) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every family's series as the exporter reads them, labels as sorted pairs."""
    return {
        name: {tuple(sorted(labels.items())): value for labels, value in series}
        for name, series in metrics.read(client).items()
    }


def test_every_family_follows_prometheus_naming_with_bounded_labels() -> None:
    for name, family in FAMILIES.items():
        assert name == family.name
        assert METRIC_NAME.match(family.metric) and family.metric.startswith(PREFIX)
        assert not family.metric.endswith("_total"), "the exposition adds _total to counters"
        assert family.sample.endswith("_total") == (family.kind == "counter")
        assert family.help.strip() and family.help.endswith((".", ")"))
        assert len(set(family.labels)) == len(family.labels)
        assert all(LABEL_NAME.match(label) for label in family.labels)
        assert not set(family.labels) & UNBOUNDED, name
        assert family.source in ("count", "gauge", "scrape")
        assert family.kind == "gauge" or family.source != "gauge"


def test_the_families_other_parts_count_are_declared_with_their_labels() -> None:
    """The interface the intake, processing and outgoing webhooks count through."""
    assert FAMILIES["webhooks"].labels == ("provider", "outcome", "reason")
    assert FAMILIES["webhooks_processed"].labels == ("provider", "outcome")
    assert FAMILIES["event_deliveries"].labels == ("outcome",)
    assert all(FAMILIES[n].source == "count" for n in ("webhooks", "webhooks_processed"))


def test_counts_add_up_across_calls_and_label_orders(counting: redis.Redis) -> None:
    metrics.count("calls", connector="sandbox", action="create_message", outcome="succeeded")
    metrics.count("calls", outcome="succeeded", action="create_message", connector="sandbox")
    metrics.count("sync_records", 250, connector="sandbox", stream="items", sync_id="s1")
    metrics.count("sync_records", 0.5, connector="sandbox", stream="items", sync_id="s1")
    metrics.gauge("budget_rate", 20, bucket="sandbox:c1")
    metrics.gauge("budget_rate", 25.5, bucket="sandbox:c1")
    assert metrics.flush()
    metrics.count("calls", connector="sandbox", action="create_message", outcome="succeeded")
    assert metrics.flush()
    found = totals(counting)
    calls = (("action", "create_message"), ("connector", "sandbox"), ("outcome", "succeeded"))
    assert found["calls"] == {calls: 3.0}
    assert found["sync_records"] == {
        (("connector", "sandbox"), ("stream", "items"), ("sync_id", "s1")): 250.5
    }
    assert found["budget_rate"] == {(("bucket", "sandbox:c1"),): 25.5}
    assert found["webhooks"] == {}
    # One hash per family, under the fleet's metrics prefix, and nothing else.
    assert sorted(counting.keys("*")) == [
        "spark-int:metrics:c:calls",
        "spark-int:metrics:c:sync_records",
        "spark-int:metrics:g:budget_rate",
    ]
    assert counting.ttl("spark-int:metrics:g:budget_rate") > 0
    assert counting.ttl("spark-int:metrics:c:calls") == -1


def test_the_background_thread_sends_without_being_asked(counting: redis.Redis) -> None:
    metrics.count("dead_letters", task="integrations.call")
    deadline = time.monotonic() + 30
    while not totals(counting)["dead_letters"]:
        assert time.monotonic() < deadline, "the count never reached Redis"
        time.sleep(0.05)
    assert totals(counting)["dead_letters"] == {(("task", "integrations.call"),): 1.0}


@pytest.mark.parametrize(
    ("family", "amount", "labels"),
    [
        ("no_such_family", 1.0, {"outcome": "x"}),
        ("calls", 1.0, {"connector": "sandbox", "outcome": "failed"}),  # a label missing
        ("calls", 1.0, {"connector": "a", "action": "b", "outcome": "c", "task_id": "t"}),
        ("event_deliveries", -1.0, {"outcome": "delivered"}),
        ("event_deliveries", float("nan"), {"outcome": "delivered"}),
        ("event_deliveries", float("inf"), {"outcome": "delivered"}),
        ("event_deliveries", "1", {"outcome": "delivered"}),
        ("event_deliveries", 1.0, {"outcome": ["unhashable"]}),
        ("sync_lag_seconds", 1.0, {"connector": "a", "stream": "b", "sync_id": "c"}),  # scraped
        ("budget_rate", 1.0, {"bucket": "b"}),  # a gauge, not a counter
    ],
)
def test_a_wrong_count_is_logged_once_and_dropped(
    counting: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    family: str,
    amount: object,
    labels: dict[str, object],
) -> None:
    metrics._refused.clear()
    with caplog.at_level(logging.WARNING, logger="spark_integrations.metrics"):
        metrics.count(family, amount, **labels)  # type: ignore[arg-type]
        metrics.count(family, amount, **labels)  # type: ignore[arg-type]
    assert metrics.flush()
    assert all(not series for series in totals(counting).values())
    assert counting.keys("*") == []
    warned = [r for r in caplog.records if "metrics: dropped" in r.getMessage()]
    assert len(warned) == 1
    assert repr(family) in warned[0].getMessage()


def test_a_wrong_gauge_is_dropped(counting: redis.Redis) -> None:
    metrics.gauge("budget_rate", float("nan"), bucket="b")
    metrics.gauge("calls", 1.0, connector="a", action="b", outcome="c")  # a counter
    metrics.gauge("budget_rate", 1.0, bucket="b", connection_id="c")
    assert metrics.flush()
    assert counting.keys("*") == []


def test_an_unconfigured_process_counts_into_nothing(redis_url: str) -> None:
    metrics.configure(None)
    metrics.count("event_deliveries", outcome="delivered")
    assert not metrics._buffer.counts
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.keys("*") == []
    finally:
        client.close()


def test_counts_wait_for_redis_and_are_sent_once_it_answers(
    counting: redis.Redis, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.configure(f"unix://{tmp_path}/nobody-listens.sock")
    with caplog.at_level(logging.WARNING, logger="spark_integrations.metrics"):
        metrics.count("event_deliveries", outcome="delivered")
        assert not metrics.flush()
        metrics.count("event_deliveries", 2, outcome="delivered")
        assert not metrics.flush()
    assert len([r for r in caplog.records if "does not take the counts" in r.getMessage()]) == 1
    metrics.configure(redis_url)
    assert metrics.flush()
    assert totals(counting)["event_deliveries"] == {(("outcome", "delivered"),): 3.0}


def test_a_stale_gauge_and_a_field_of_other_labels_are_not_read(counting: redis.Redis) -> None:
    stale = int(time.time()) - metrics.GAUGE_TTL - 5
    counting.hset("spark-int:metrics:g:budget_rate", '{"bucket":"old"}', f"3.0 {stale}")
    counting.hset("spark-int:metrics:g:budget_rate", '{"bucket":"new"}', f"4.0 {int(time.time())}")
    counting.hset("spark-int:metrics:c:calls", '{"connector":"a"}', "7")
    counting.hset("spark-int:metrics:c:calls", "not json", "7")
    found = totals(counting)
    assert found["budget_rate"] == {(("bucket", "new"),): 4.0}
    assert found["calls"] == {}


def test_a_forked_child_sends_its_own_counts_and_never_its_parents(
    counting: redis.Redis,
) -> None:
    """A prefork pool child starts empty: the parent's buffered counts are sent once."""
    for _ in range(3):
        metrics.count("event_deliveries", outcome="delivered")
    pid = os.fork()
    if pid == 0:  # the child: count, send, and leave without running the parent's cleanup
        code = 1
        try:
            empty = not metrics._buffer.counts and metrics._buffer.thread is None
            for _ in range(2):
                metrics.count("event_deliveries", outcome="delivered")
            code = 0 if empty and metrics.flush() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert metrics.flush()
    assert totals(counting)["event_deliveries"] == {(("outcome", "delivered"),): 5.0}
