"""Reliable fetch meets messages kombu cannot read, and polls that woke for nothing.

A message whose tag the take can read is held before kombu looks at it: if kombu then fails on
it (a body that is not base64, an encoding it does not know), it must not go back first in line
to fail the next worker, and the next, forever. It is set aside, once, in the unreadable list,
and the worker goes on. And a consumer without an event loop (``drain_events``) woken by a
notification that brought it nothing must go on waiting, not return as if it got a message.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest
import redis

from tests.unit.reliable_fetch import (  # noqa: F401 - the *_fixture names are fixtures
    QUEUE,
    Worker,
    broker_fixture,
    send_fixture,
    spark_url_fixture,
    workers_fixture,
)

pytestmark = pytest.mark.server  # a real Redis

Open = Callable[..., Worker]
Send = Callable[..., None]


def _raw(tag: str, body: str, encoding: str = "base64") -> bytes:
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {},
            "properties": {
                "delivery_tag": tag,
                "body_encoding": encoding,
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": 0,
            },
        }
    ).encode()


@pytest.mark.parametrize(
    "raw",
    [_raw("bad-base64", "abc"), _raw("bad-encoding", "e30=", encoding="rot13")],
    ids=["not-base64", "unknown-encoding"],
)
def test_a_message_kombu_cannot_read_is_set_aside_once(
    broker: redis.Redis, workers: Open, send: Send, raw: bytes
) -> None:
    worker = workers(ack=True)
    broker.lpush(QUEUE, raw)
    send({"n": 1})
    (message,) = worker.take()
    assert message.payload == {"n": 1}
    assert broker.lrange(worker.channel.unreadable_key, 0, -1) == [
        json.dumps([QUEUE]).encode()[:-1] + b"," + raw + b"]"
    ]
    assert broker.llen(QUEUE) == 0
    assert broker.hlen(worker.channel.held_key) == 0
    # A second worker finds nothing: the message does not come back to fail it too.
    workers().take_nothing()


def test_a_message_that_is_not_json_is_set_aside_too(
    broker: redis.Redis, workers: Open, send: Send
) -> None:
    worker = workers(ack=True)
    broker.lpush(QUEUE, b"not json at all")
    send({"n": 2})
    (message,) = worker.take()
    assert message.payload == {"n": 2}
    assert broker.lrange(worker.channel.unreadable_key, 0, -1) == [b"not json at all"]
    assert broker.hlen(worker.channel.held_key) == 0


def test_a_drain_woken_for_nothing_waits_out_its_timeout(
    broker: redis.Redis, workers: Open, send: Send
) -> None:
    idle = workers()
    busy = workers(ack=True)
    # The idle consumer's first drain reads its subscription's confirmation: no message.
    with pytest.raises(socket.timeout):
        idle.conn.drain_events(timeout=0.3)
    send({"n": 3})
    (message,) = busy.take()
    assert message.payload == {"n": 3}
    # The idle one was notified of the push, took nothing (the other had it) and waits on.
    with pytest.raises(socket.timeout):
        idle.conn.drain_events(timeout=0.3)
    assert idle.got == []
