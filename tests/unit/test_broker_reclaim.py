"""Reliable fetch (broker.reliable): giving back the messages of dead consumers, and only theirs.

A consumer is dead once its alive key is gone (its process stopped renewing it); its held
messages go back to their lists first in line, marked redelivered, exactly once, whoever
reclaims and however many reclaim at the same time. A living consumer's messages are never
handed to another.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer
from kombu.asynchronous import Hub

from tests.unit.reliable_fetch import (  # noqa: F401 - the *_fixture names are fixtures
    QUEUE,
    Worker,
    body_of,
    broker_fixture,
    queue,
    send_fixture,
    spark_url_fixture,
    wait_for,
    workers_fixture,
)
from tests.unit.test_broker_reliable import _take_directly

pytestmark = pytest.mark.server  # a real Redis

Open = Callable[..., Worker]
Send = Callable[..., None]


def _list_bodies(broker: redis.Redis, key: str = QUEUE) -> list[Any]:
    """The bodies in a list, first in line first."""
    return [body_of(json.loads(raw)) for raw in reversed(broker.lrange(key, 0, -1))]


def test_a_dead_consumers_messages_come_back_first_in_line_once(
    broker: redis.Redis, workers: Open, send: Send, caplog: pytest.LogCaptureFixture
) -> None:
    dead = workers(prefetch=2)
    send({"n": 1})
    send({"n": 2})
    dead.take(2)
    send({"n": 3})
    send({"n": 4})
    dead.kill(broker)
    living = workers(prefetch=0)
    assert broker.sismember(dead.channel.consumers_key, dead.channel.consumer_id)
    with caplog.at_level(logging.WARNING, logger="spark_integrations.broker.reliable"):
        assert living.channel.reclaim() == 2
    assert "Gave back 2 message(s)" in caplog.text
    assert not broker.exists(dead.channel.held_key)
    assert not broker.sismember(dead.channel.consumers_key, dead.channel.consumer_id)
    bodies = _list_bodies(broker)
    assert sorted(b["n"] for b in bodies[:2]) == [1, 2]
    assert [b["n"] for b in bodies[2:]] == [3, 4]
    assert living.channel.reclaim() == 0

    back = living.take(4)
    assert [m.delivery_info.get("redelivered", False) for m in back] == [True, True, False, False]
    assert sorted(m.payload["n"] for m in back) == [1, 2, 3, 4]
    assert {m.delivery_tag for m in back[:2]} == {m.delivery_tag for m in dead.got}
    for m in back:
        m.ack()
    # The dead one's late acknowledgements and its closing change nothing.
    for m in dead.got:
        m.ack()
    dead.conn.release()
    assert broker.llen(QUEUE) == 0
    living.take_nothing()


def test_an_alive_key_left_to_expire_is_death(
    broker: redis.Redis, workers: Open, send: Send
) -> None:
    dead = workers(reclaim_after=3)
    send({"n": 1})
    dead.take()
    dead.kill(broker, expire=True)
    living = workers()
    assert living.channel.reclaim() == 0  # still within its reclaim time
    assert 0 < broker.pttl(dead.channel.alive_key) <= 3000
    wait_for(lambda: not broker.exists(dead.channel.alive_key), what="the alive key to expire")
    assert living.channel.reclaim() == 1
    (message,) = living.take()
    assert message.payload == {"n": 1}
    assert message.delivery_info["redelivered"] is True


def test_a_living_consumers_messages_are_never_reclaimed(
    broker: redis.Redis, workers: Open, send: Send
) -> None:
    holder = workers(prefetch=3)
    for n in range(3):
        send({"n": n})
    holder.take(3)
    held = holder.held(broker)
    reclaimers = [workers() for _ in range(3)]
    for round_ in range(20):
        # A dead consumer each round, so the reclaims have work to do.
        dead = workers()
        send({"round": round_})
        dead.take()
        dead.kill(broker)
        moved = [r.channel.reclaim() for r in reclaimers for _ in range(5)]
        assert sum(moved) == 1, moved
        broker.delete(QUEUE)
        assert holder.held(broker) == held
    assert broker.sismember(holder.channel.consumers_key, holder.channel.consumer_id)


def test_a_living_consumer_holding_past_the_reclaim_time_keeps_its_messages(
    broker: redis.Redis, workers: Open, send: Send
) -> None:
    # The alive key lasts 2 s and is renewed by the consumer's own thread: a message held for
    # twice that is not handed out, whatever the reclaims meanwhile.
    holder = workers(reclaim_after=2)
    send({"n": 1})
    (message,) = holder.take()
    other = workers(reclaim_after=2)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert other.channel.reclaim() == 0
    assert broker.exists(holder.channel.alive_key)
    assert list(holder.held(broker)) == [message.delivery_tag]
    message.ack()
    assert holder.held(broker) == {}


def _reclaim_together(reclaimers: list[Worker]) -> tuple[list[int], list[BaseException]]:
    """Every reclaimer reclaims at once, each from a thread of its own; their counts and errors."""
    barrier = threading.Barrier(len(reclaimers))
    counts: list[int] = []
    errors: list[BaseException] = []

    def reclaim(worker: Worker) -> None:
        try:
            barrier.wait(timeout=30)
            counts.append(worker.channel.reclaim())
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=reclaim, args=(r,)) for r in reclaimers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return counts, errors


def test_racing_reclaimers_give_each_message_back_once(
    broker: redis.Redis, workers: Open, send: Send
) -> None:
    reclaimers = [workers() for _ in range(4)]
    for _round in range(5):
        dead = workers(prefetch=10)
        for n in range(10):
            send({"n": n})
        taken = {m.delivery_tag for m in dead.take(10)}
        dead.kill(broker)
        counts, errors = _reclaim_together(reclaimers)
        assert errors == []
        assert sorted(counts)[:-1] == [0] * (len(reclaimers) - 1)
        assert sum(counts) == 10
        back = [json.loads(raw) for raw in broker.lrange(QUEUE, 0, -1)]
        assert sorted(p["properties"]["delivery_tag"] for p in back) == sorted(taken)
        assert all(p["properties"]["delivery_info"]["redelivered"] for p in back)
        assert all(broker.hlen(r.channel.held_key) == 0 for r in reclaimers)
        broker.delete(QUEUE)


def test_a_reclaimer_that_dies_before_giving_back_is_reclaimed_in_turn(
    broker: redis.Redis, workers: Open, send: Send, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = workers()
    send({"n": 1})
    dead.take()
    dead.kill(broker)
    # The reclaimer had itself been counted dead (its alive key expired while it could not reach
    # Redis) and reclaims before renewing; it then dies between the reclaim and giving back.
    reclaimer = workers()
    reclaimer.kill(broker)
    broker.srem(reclaimer.channel.consumers_key, reclaimer.channel.consumer_id)

    def killed(tag: str, leftmost: bool = False) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(reclaimer.channel, "give_back", killed)
    with pytest.raises(KeyboardInterrupt):
        reclaimer.channel.reclaim()
    assert broker.hlen(reclaimer.channel.held_key) == 1
    broker.delete(reclaimer.channel.alive_key)
    third = workers()
    assert third.channel.reclaim() == 1
    (message,) = third.take()
    assert message.payload == {"n": 1}
    assert message.delivery_info["redelivered"] is True


def test_a_consumer_counted_dead_that_renews_is_alive_again(
    broker: redis.Redis, workers: Open, send: Send
) -> None:
    worker = workers()
    send({"n": 1})
    worker.take()
    broker.delete(worker.channel.alive_key)
    broker.srem(worker.channel.consumers_key, worker.channel.consumer_id)
    worker.channel.heartbeat()
    assert broker.exists(worker.channel.alive_key)
    assert broker.sismember(worker.channel.consumers_key, worker.channel.consumer_id)
    assert workers().channel.reclaim() == 0
    assert len(worker.held(broker)) == 1


def test_heartbeat_gives_back_what_was_taken_but_never_delivered(
    broker: redis.Redis, workers: Open, send: Send
) -> None:
    worker = workers(prefetch=2)
    send({"n": 1})
    (delivered,) = worker.take()
    send({"n": 2})
    send({"n": 3})
    found = _take_directly(worker.channel)
    assert found is not None
    assert len(worker.held(broker)) == 2
    worker.channel.heartbeat()
    # The orphan is first in line again, marked redelivered; the delivered one stays held.
    assert list(worker.held(broker)) == [delivered.delivery_tag]
    assert [b["n"] for b in _list_bodies(broker)] == [2, 3]
    (orphan,) = worker.take()
    assert orphan.payload == {"n": 2}
    assert orphan.delivery_info["redelivered"] is True
    delivered.ack()
    orphan.ack()
    assert worker.held(broker) == {}


def test_on_an_event_loop_the_living_take_back_a_dead_consumers_messages(
    broker: redis.Redis, workers: Open, spark_url: str, send: Send
) -> None:
    dead = workers(reclaim_after=1)
    send({"n": 1})
    (lost,) = dead.take()
    dead.kill(broker)
    got: list[Any] = []
    hub = Hub()
    conn = Connection(spark_url, transport_options={"reclaim_after": 1})
    try:
        conn.connect()
        conn.transport.register_with_event_loop(conn.connection, hub)
        cycle = conn.transport.cycle
        first = cycle._reclaim_tref
        conn.transport.register_with_event_loop(conn.connection, hub)
        assert first.canceled  # registering again leaves no second timer behind
        channel = conn.channel()

        def received(body: Any, message: Any) -> None:
            got.append(message)
            message.ack()

        consumer = Consumer(channel, [queue()], callbacks=[received])
        consumer.qos(prefetch_count=1)
        consumer.consume()
        loop = hub.create_loop()

        def turn() -> bool:
            next(loop)
            return bool(got) and not broker.exists(dead.channel.held_key, channel.held_key)

        wait_for(turn, timeout=30, what="the reclaim timer and the take")
        send({"n": 2})

        def second() -> bool:
            next(loop)
            return len(got) == 2

        wait_for(second, timeout=30, what="the next message")
    finally:
        conn.release()
        hub.close()
    assert [m.payload for m in got] == [{"n": 1}, {"n": 2}]
    assert got[0].delivery_tag == lost.delivery_tag
    assert got[0].delivery_info["redelivered"] is True
    assert broker.llen(QUEUE) == 0
