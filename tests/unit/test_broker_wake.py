"""Reliable fetch (broker.reliable): consumers woken by keyspace notifications of their lists, and
taking by polling on a server that refuses to send them.

The server's flags are changed only on private redis-servers; on the machine's shared Redis a
test only checks that what it needs is there and that nothing it had is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Producer

from spark_integrations.broker import register
from spark_integrations.broker.reliable import Channel
from tests.unit.reliable_fetch import (  # noqa: F401 - the *_fixture names are fixtures
    QUEUE,
    Worker,
    broker_fixture,
    private_redis,
    queue,
    send_fixture,
    spark_url_fixture,
    workers_fixture,
)

pytestmark = pytest.mark.server  # a real Redis

Open = Callable[..., Worker]
Send = Callable[..., None]
LOGGER = "spark_integrations.broker.reliable"


def _flags(client: redis.Redis) -> set[str]:
    value = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
    return set(value.decode() if isinstance(value, bytes) else value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [((), {"K", "l"}), (("Ex",), {"E", "x", "K", "l"}), (("AK",), {"A", "K"})],
    ids=["none", "other-flags-kept", "already-there"],
)
def test_enable_wake_adds_k_and_l_to_the_servers_flags(
    given: tuple[str, ...], expected: set[str]
) -> None:
    register()
    options = ("--notify-keyspace-events", *given) if given else ()
    with private_redis(*options) as sock:
        client = redis.Redis(unix_socket_path=str(sock))
        with Connection(f"sparkredis+socket://{sock}") as conn:
            channel = conn.channel()
            assert isinstance(channel, Channel)
            assert channel.enable_wake() is True
            assert channel.wake_on is True
            assert _flags(client) == expected
            # Asked once per channel.
            client.config_set("notify-keyspace-events", "")
            assert channel.enable_wake() is True
            assert _flags(client) == set()
        client.close()


def test_enable_wake_on_the_shared_server_keeps_its_flags(
    broker: redis.Redis, workers: Open
) -> None:
    before = broker.config_get("notify-keyspace-events")["notify-keyspace-events"]
    try:
        worker = workers()
        assert worker.channel.enable_wake() is True
        after = _flags(broker)
        assert set(before.decode() if isinstance(before, bytes) else before) <= after
        assert "K" in after
        assert "l" in after or "A" in after
    finally:
        broker.config_set("notify-keyspace-events", before)


def _take_while_waiting(worker: Worker, publish: Callable[[], None]) -> tuple[Any, int]:
    """Publish once the consumer waits on its sockets; the message taken, and how many times the
    wake handler ran by the end of the next wait."""
    channel = worker.channel
    woken: list[int] = []
    read = channel.handlers["WAKE"]

    def counted() -> Any:
        woken.append(1)
        return read()

    channel.handlers["WAKE"] = counted
    cycle = worker.conn.transport.cycle
    waiting = threading.Event()
    poll = cycle.poller.poll

    def poll_and_tell(timeout: Any = None) -> Any:
        waiting.set()
        return poll(timeout)

    cycle.poller.poll = poll_and_tell

    def publish_once_waiting() -> None:
        if waiting.wait(timeout=30):
            publish()

    sender = threading.Thread(target=publish_once_waiting)
    sender.start()
    try:
        (message,) = worker.take()
    finally:
        sender.join()
    # The notification is read by the end of the next wait, whichever take found the message.
    worker.take_nothing(0.3)
    return message, len(woken)


def _socket_worker(sock: Path) -> tuple[Worker, Callable[[int], None], Connection]:
    """A consumer and a sender on a private server's socket."""
    conn = Connection(f"sparkredis+socket://{sock}", transport_options={"reclaim_after": 60})
    got: list[Any] = []
    channel = conn.channel()
    consumer = Consumer(channel, [queue()], callbacks=[lambda b, m: got.append(m)])
    consumer.qos(prefetch_count=1)
    consumer.consume()
    sender = Connection(f"redis+socket://{sock}")
    producer = Producer(sender.channel())
    q = queue()

    def publish(n: int) -> None:
        producer.publish({"n": n}, exchange=q.exchange, routing_key=QUEUE, declare=[q])

    return Worker(conn, channel, consumer, got), publish, sender


def test_a_server_refusing_config_is_polled_after_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    register()
    with (
        private_redis("--rename-command", "CONFIG", '""') as sock,
        caplog.at_level(logging.WARNING, logger=LOGGER),
    ):
        worker, publish, sender = _socket_worker(sock)
        with worker.conn, sender:
            worker.take_nothing(0.3)
            assert worker.channel.wake_on is False
            # Sent while the consumer waits: no notification comes, a take by polling finds it.
            first, _ = _take_while_waiting(worker, lambda: publish(1))
            assert first.payload == {"n": 1}
            first.ack()
            for n in (2, 3):
                publish(n)
                (message,) = worker.take()
                assert message.payload == {"n": n}
                message.ack()
            client = redis.Redis(unix_socket_path=str(sock))
            assert client.hlen(worker.channel.held_key) == 0
            assert client.llen(QUEUE) == 0
            client.close()
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "keyspace notifications" in message
    assert "notify-keyspace-events" in message
    assert "\n" not in message


def test_a_server_refusing_config_but_configured_still_wakes() -> None:
    register()
    options = ("--rename-command", "CONFIG", '""', "--notify-keyspace-events", "Kl")
    with private_redis(*options) as sock:
        worker, publish, sender = _socket_worker(sock)
        with worker.conn, sender:
            worker.take_nothing(0.2)
            assert worker.channel.wake_on is False
            message, woken = _take_while_waiting(worker, lambda: publish(1))
            assert message.payload == {"n": 1}
            assert woken
            message.ack()


def test_a_waiting_consumer_is_woken_by_its_lists_event(
    broker: redis.Redis, redis_url: str, workers: Open, send: Send
) -> None:
    worker = workers()
    channel = worker.channel
    worker.take_nothing(0.2)
    assert channel.wake_on is True
    db = int(redis_url.rsplit("/", 1)[1])
    wake_channel = f"__keyspace@{db}__:{QUEUE}"
    assert wake_channel in channel._wake_keys
    assert dict(broker.pubsub_numsub(wake_channel))[wake_channel.encode()] >= 1
    message, woken = _take_while_waiting(worker, lambda: send({"n": 1}))
    assert message.payload == {"n": 1}
    assert woken
    message.ack()
