"""Helpers of the reliable-fetch tests: consumers on the sparkredis transport, a sender on plain
kombu, and a view of where a message is in Redis.

Every consumer is a kombu connection of its own with one channel, so each has its own consumer id
and held hash, as the main processes of two workers do.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.message import Message

from spark_integrations.broker import register
from spark_integrations.broker.reliable import Channel

QUEUE = "fetch.q"


def queue(name: str = QUEUE) -> Queue:
    """A plain queue on a direct exchange of its own name, as the fleet declares them."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def body_of(payload: dict[str, Any]) -> Any:
    """The decoded body of a raw kombu message (base64 JSON, as the Redis transport sends)."""
    return json.loads(base64.b64decode(payload["body"]))


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)


@dataclass
class Worker:
    """One consumer: a sparkredis connection, its channel and what it received."""

    conn: Connection
    channel: Channel
    consumer: Consumer
    got: list[Message] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def take(self, n: int = 1, timeout: float = 10.0) -> list[Message]:
        """Drain until ``n`` more messages arrived; the new ones."""
        start = len(self.got)
        deadline = time.monotonic() + timeout
        while len(self.got) < start + n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"got {len(self.got) - start} of {n} messages in {timeout} s")
            with contextlib.suppress(socket.timeout):
                self.conn.drain_events(timeout=remaining)
        return self.got[start:]

    def take_nothing(self, timeout: float = 0.5) -> None:
        """Drain for ``timeout`` seconds and check that nothing came."""
        before = len(self.got)
        with contextlib.suppress(socket.timeout):
            self.conn.drain_events(timeout=timeout)
        assert len(self.got) == before, [m.payload for m in self.got[before:]]

    def held(self, client: redis.Redis) -> dict[str, tuple[str, dict[str, Any]]]:
        """This consumer's held hash: delivery tag -> (source list, raw message)."""
        out = {}
        for tag, raw in client.hgetall(self.channel.held_key).items():
            source, payload = json.loads(raw)
            out[tag.decode()] = (source, payload)
        return out

    def kill(self, client: redis.Redis, expire: bool = False) -> None:
        """As if the process died: it stops renewing its alive key, which is deleted (or left
        to expire); nothing is given back."""
        channel = self.channel
        channel._alive_stop.set()
        if channel._alive_thread is not None:
            channel._alive_thread.join(timeout=10)
            assert not channel._alive_thread.is_alive()
        if not expire:
            client.delete(channel.alive_key)


@pytest.fixture(name="broker")
def broker_fixture(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client on the test's database."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(name="spark_url")
def spark_url_fixture(redis_url: str) -> str:
    """The test's database through the reliable transport."""
    register()
    assert redis_url.startswith("redis://")
    return "spark" + redis_url


@pytest.fixture(name="workers")
def workers_fixture(spark_url: str) -> Iterator[Callable[..., Worker]]:
    """Open consumers on the reliable transport; all are closed at the end of the test."""
    opened: list[Connection] = []

    def open_worker(
        queues: list[str] | None = None,
        prefetch: int = 1,
        no_ack: bool = False,
        reclaim_after: float = 60,
        ack: bool = False,
        **options: Any,
    ) -> Worker:
        conn = Connection(spark_url, transport_options={"reclaim_after": reclaim_after, **options})
        opened.append(conn)
        channel = conn.channel()
        worker = Worker(conn, channel, None)  # type: ignore[arg-type]

        def received(body: Any, message: Message) -> None:
            worker.got.append(message)
            if ack:
                message.ack()

        consumer = Consumer(
            channel,
            [queue(name) for name in (queues or [QUEUE])],
            callbacks=[received],
            no_ack=no_ack,
        )
        consumer.qos(prefetch_count=prefetch)
        consumer.consume()
        worker.consumer = consumer
        return worker

    yield open_worker
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.release()


@pytest.fixture(name="send")
def send_fixture(redis_url: str) -> Iterator[Callable[..., None]]:
    """Publish as every sender does: plain kombu on ``redis://`` (LPUSH)."""
    conn = Connection(redis_url)
    producer = Producer(conn.channel())

    def publish(body: Any, to: str = QUEUE, priority: int | None = None) -> None:
        q = queue(to)
        producer.publish(
            body,
            exchange=q.exchange,
            routing_key=to,
            declare=[q],
            serializer="json",
            priority=priority,
        )

    yield publish
    conn.release()


def places(client: redis.Redis, needle: bytes) -> list[str]:
    """Every key of the database whose value holds ``needle`` (lists, hashes, strings, sets)."""
    found = []
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [*client.hkeys(key), *client.hvals(key)]
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"string":
            values = [client.get(key)]
        else:
            values = []
        if any(needle in (v or b"") for v in values):
            found.append(key.decode())
    return found


@contextlib.contextmanager
def private_redis(*options: str) -> Iterator[Path]:
    """A redis-server of the test's own, on a Unix socket, started with ``options``; its socket.

    For what the machine's shared Redis must not be put through (its CONFIG refused, its
    notification flags changed).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    folder = Path(tempfile.mkdtemp(prefix="spark-int-redis-"))
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [
            *(binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"),
            *("--save", '""', "--appendonly", "no", "--dir", str(folder)),
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(sock))

    def up() -> bool:
        assert proc.poll() is None, f"redis-server {options} exited with {proc.returncode}"
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(up, what="the private redis-server")
        yield sock
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
