"""The gateway's fleet exporter: what every process counted and the state of breakers, budgets,
syncs, queues and reliable fetch's consumers, read at scrape time and parsed back with
prometheus-client's own parser."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Consumer, Exchange, Producer, Queue
from kombu.connection import Connection as KombuConnection
from kombu.message import Message
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

import spark_integrations.settings as settings_module
from spark_integrations import metrics
from spark_integrations.broker import worker_broker_url
from spark_integrations.constants import ALL_QUEUES, QUEUE_CALLS, QUEUE_SYNCS
from spark_integrations.coordination import (
    BreakerPolicy,
    Bucket,
    RedisCircuitBreaker,
    RedisRateBudget,
)
from spark_integrations.errors import StoreError
from spark_integrations.gateway.fleet_metrics import SOURCES, FleetMetrics
from spark_integrations.metrics_families import FAMILIES
from spark_integrations.settings import Settings
from spark_integrations.store import SyncDefinition, SyncRun, session_scope
from spark_integrations.store.types import utcnow
from tests.integration.fleet import wait_for

pytestmark = pytest.mark.server  # a real Redis (and PostgreSQL, RabbitMQ) of the fixtures

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

HELD = FAMILIES["broker_held_messages"].sample
CONSUMERS = FAMILIES["broker_consumers"].sample
DEPTH = FAMILIES["queue_depth"].sample


def fleet_settings(
    broker: str, redis_url: str, store_url: str, fernet_key: str, **extra: str
) -> Settings:
    return settings_module.load(
        {
            "SPARK_INTEGRATIONS_BROKER_URL": broker,
            "SPARK_INTEGRATIONS_RESULT_BACKEND": redis_url,
            "SPARK_INTEGRATIONS_REDIS_URL": redis_url,
            "SPARK_INTEGRATIONS_DATABASE_URL": store_url,
            "SPARK_INTEGRATIONS_SECRET_KEYS": fernet_key,
            **{f"SPARK_INTEGRATIONS_{name}": value for name, value in extra.items()},
        }
    )


def scrape(collector: FleetMetrics) -> Samples:
    """An exposition of a registry holding ``collector``, parsed: (name, labels) -> value."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture
def counting(redis_url: str) -> Iterator[redis.Redis]:
    metrics.configure(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        metrics.configure(None)
        client.close()


def test_a_scrape_shows_counters_breakers_budgets_lag_and_queues(
    counting: redis.Redis, redis_url: str, store_url: str, sync_id: str, fernet_key: str
) -> None:
    for _ in range(3):
        metrics.count("calls", connector="sandbox", action="create_message", outcome="succeeded")
    metrics.count("webhooks", provider="github", outcome="refused", reason="bad_signature")
    metrics.gauge("budget_rate", 20, bucket="sandbox:c1")
    assert metrics.flush()
    breaker = RedisCircuitBreaker(counting, BreakerPolicy(fail_max=1, reset_timeout=60))
    breaker.record_failure(["sandbox:c1"], "t")
    RedisRateBudget(counting).acquire([Bucket("sandbox:c1", rate=1, burst=0)])
    counting.rpush(QUEUE_CALLS, "m1", "m2")
    counting.rpush(f"{QUEUE_CALLS}\x06\x163", "m3")  # kombu's list for priority 3
    now = utcnow()
    with session_scope(store_url) as session:
        # Its latest run failed; the one before succeeded two minutes ago.
        session.add(
            SyncRun(
                sync_id=sync_id,
                status="succeeded",
                created_at=now - timedelta(seconds=180),
                finished_at=now - timedelta(seconds=120),
            )
        )
        session.add(SyncRun(sync_id=sync_id, status="failed", created_at=now, finished_at=now))
        sync = session.get(SyncDefinition, sync_id)
        assert sync is not None
        never = SyncDefinition(connection_id=sync.connection_id, stream="items")
        paused = SyncDefinition(connection_id=sync.connection_id, stream="items", enabled=False)
        session.add_all([never, paused])
        session.flush()
        never_id, paused_id = never.id, paused.id
    settings = fleet_settings(redis_url, redis_url, store_url, fernet_key)
    samples = scrape(FleetMetrics(settings, lambda: session_scope(store_url)))

    calls = (("action", "create_message"), ("connector", "sandbox"), ("outcome", "succeeded"))
    assert samples[("spark_integrations_calls_total", calls)] == 3
    refused = (("outcome", "refused"), ("provider", "github"), ("reason", "bad_signature"))
    assert samples[("spark_integrations_webhooks_total", refused)] == 1
    assert samples[("spark_integrations_budget_rate", (("bucket", "sandbox:c1"),))] == 20
    state = "spark_integrations_breaker_state"
    assert samples[(state, (("breaker", "sandbox:c1"), ("state", "open")))] == 1
    assert samples[(state, (("breaker", "sandbox:c1"), ("state", "closed")))] == 0
    assert samples[("spark_integrations_breaker_failures", (("breaker", "sandbox:c1"),))] == 1
    backlog = samples[("spark_integrations_budget_backlog_seconds", (("bucket", "sandbox:c1"),))]
    assert 0 < backlog <= 1
    lag = "spark_integrations_sync_lag_seconds"
    of = {labels: value for (name, labels), value in samples.items() if name == lag}
    assert set(of) == {
        (("connector", "sandbox"), ("stream", "items"), ("sync_id", sync_id)),
        (("connector", "sandbox"), ("stream", "items"), ("sync_id", never_id)),
    }
    assert paused_id not in str(of)
    assert 120 <= of[(("connector", "sandbox"), ("stream", "items"), ("sync_id", sync_id))] < 3600
    assert of[(("connector", "sandbox"), ("stream", "items"), ("sync_id", never_id))] < 3600
    depth = {
        queue: samples[("spark_integrations_queue_depth", (("queue", queue),))]
        for queue in ALL_QUEUES
    }
    assert depth == {queue: (3 if queue == QUEUE_CALLS else 0) for queue in ALL_QUEUES}
    assert samples[(HELD, ())] == 0  # reliable fetch (the default), no worker yet
    assert samples[(CONSUMERS, (("state", "alive"),))] == 0
    assert samples[(CONSUMERS, (("state", "dead"),))] == 0
    for source in SOURCES:
        assert samples[("spark_integrations_scrape_up", (("source", source),))] == 1
        assert samples[("spark_integrations_scrape_errors_total", (("source", source),))] == 0


@contextmanager
def _store_down() -> Iterator[Session]:
    raise StoreError("the store at sqlite:///nowhere is unreachable (OperationalError).")
    yield  # pragma: no cover


def test_with_redis_broker_and_store_down_the_scrape_answers_and_says_so(
    tmp_path: Path, fernet_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"redis+socket://{tmp_path}/nobody.sock"
    settings = fleet_settings(nowhere, nowhere, "sqlite:///x.db", fernet_key)
    collector = FleetMetrics(settings, _store_down)
    with caplog.at_level(logging.WARNING, logger="gateway"):
        first = scrape(collector)
        second = scrape(collector)
    assert names(first) == {
        "spark_integrations_scrape_up",
        "spark_integrations_scrape_errors_total",
    }
    for source in SOURCES:
        assert first[("spark_integrations_scrape_up", (("source", source),))] == 0
        assert first[("spark_integrations_scrape_errors_total", (("source", source),))] == 1
        assert second[("spark_integrations_scrape_errors_total", (("source", source),))] == 2
    warned = [r.getMessage() for r in caplog.records if "left out of the scrape" in r.getMessage()]
    assert len(warned) == len(SOURCES)  # once per source while it stays down


def test_a_source_that_hangs_is_left_out_and_not_asked_again_meanwhile(
    counting: redis.Redis, redis_url: str, fernet_key: str
) -> None:
    release = threading.Event()
    asked: list[int] = []

    @contextmanager
    def slow_store() -> Iterator[Any]:
        asked.append(1)
        release.wait(30)
        raise StoreError("the store did not answer.")
        yield  # pragma: no cover

    settings = fleet_settings(redis_url, redis_url, "sqlite:///x.db", fernet_key)
    factory: Any = slow_store
    collector = FleetMetrics(settings, factory, timeout=0.3)
    up = ("spark_integrations_scrape_up", (("source", "syncs"),))
    first = scrape(collector)
    second = scrape(collector)
    assert first[up] == 0 and second[up] == 0
    assert first[("spark_integrations_scrape_up", (("source", "counters"),))] == 1
    assert len(asked) == 1  # the read still in progress was waited for, not started again
    release.set()
    wait_for(lambda: collector._reads["syncs"].done(), 30, "the hung read to end")
    scrape(collector)
    assert len(asked) == 2


def test_queue_depth_on_rabbitmq(
    amqp_url: str, redis_url: str, sqlite_url: str, fernet_key: str
) -> None:
    sessions: Any = lambda: session_scope(sqlite_url)  # noqa: E731
    collector = FleetMetrics(fleet_settings(amqp_url, redis_url, sqlite_url, fernet_key), sessions)
    depth = ("spark_integrations_queue_depth", (("queue", QUEUE_SYNCS),))
    with KombuConnection(amqp_url) as conn:
        queue = Queue(QUEUE_SYNCS, Exchange(QUEUE_SYNCS, type="direct"), routing_key=QUEUE_SYNCS)
        producer = Producer(conn.channel())
        for n in range(2):
            producer.publish(
                {"n": n}, exchange=queue.exchange, routing_key=QUEUE_SYNCS, declare=[queue]
            )
    wait_for(lambda: scrape(collector).get(depth) == 2, 30, "RabbitMQ to count two messages")
    samples = scrape(collector)
    assert samples[("spark_integrations_scrape_up", (("source", "queues"),))] == 1
    assert not names(samples) & {HELD, CONSUMERS}  # RabbitMQ hands back what a consumer held


def test_held_messages_and_consumers_of_reliable_fetch(
    redis_url: str, sqlite_url: str, fernet_key: str
) -> None:
    """Read from what the reliable transport itself writes: a worker's channel takes two
    messages of three, acknowledges one, then stops proving alive."""
    sessions: Any = lambda: session_scope(sqlite_url)  # noqa: E731
    collector = FleetMetrics(fleet_settings(redis_url, redis_url, sqlite_url, fernet_key), sessions)
    queue = Queue(QUEUE_CALLS, Exchange(QUEUE_CALLS, type="direct"), routing_key=QUEUE_CALLS)
    with KombuConnection(redis_url) as sender:  # as every sender sends: plain redis://
        producer = Producer(sender.channel())
        for n in range(3):
            producer.publish(
                {"n": n}, exchange=queue.exchange, routing_key=QUEUE_CALLS, declare=[queue]
            )
    taken: list[Message] = []
    url = worker_broker_url(redis_url, "reliable")
    with KombuConnection(url, transport_options={"reclaim_after": 30}) as worker:
        channel: Any = worker.default_channel
        consumer = Consumer(channel, [queue], callbacks=[lambda _, m: taken.append(m)])
        consumer.qos(prefetch_count=2)
        with consumer:
            while len(taken) < 2:
                worker.drain_events(timeout=10)
            taken[0].ack()
            samples = scrape(collector)
            assert samples[(HELD, ())] == 1
            assert samples[(CONSUMERS, (("state", "alive"),))] == 1
            assert samples[(CONSUMERS, (("state", "dead"),))] == 0
            assert samples[(DEPTH, (("queue", QUEUE_CALLS),))] == 1
            # As if the worker had died: its alive key gone, its message still held, its
            # consumer in the set until a living worker reclaims.
            client = redis.Redis.from_url(redis_url)
            with client:
                assert client.delete(channel.alive_key) == 1
            samples = scrape(collector)
            assert samples[(HELD, ())] == 1
            assert samples[(CONSUMERS, (("state", "alive"),))] == 0
            assert samples[(CONSUMERS, (("state", "dead"),))] == 1
    # Closing gave back what it held and left the consumers set.
    samples = scrape(collector)
    assert samples[(HELD, ())] == 0
    assert samples[(CONSUMERS, (("state", "dead"),))] == 0
    assert samples[(DEPTH, (("queue", QUEUE_CALLS),))] == 2
    assert samples[("spark_integrations_scrape_up", (("source", "queues"),))] == 1


def test_kombu_fetch_has_no_held_messages_or_consumers(
    redis_url: str, sqlite_url: str, fernet_key: str
) -> None:
    sessions: Any = lambda: session_scope(sqlite_url)  # noqa: E731
    settings = fleet_settings(redis_url, redis_url, sqlite_url, fernet_key, BROKER_FETCH="kombu")
    samples = scrape(FleetMetrics(settings, sessions))
    assert (DEPTH, (("queue", QUEUE_CALLS),)) in samples
    assert not names(samples) & {HELD, CONSUMERS}
