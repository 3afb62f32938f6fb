"""No secret in task arguments, results, errors, Redis or logs (CONTRACT.md).

Calls run with known secret values (an API key, a basic-auth password, a wrong key that the
provider refuses), some failing on purpose. The broker's messages are scanned while they are
queued: the calls are sent before any worker runs, and the queue is read (on Redis, every key;
on RabbitMQ, every message, taken and put back unacknowledged). Then the workers run them, and
Redis is scanned again while retries wait in the broker, and once all is done with the dead
letters, every task outcome and the workers' logs. kombu's base64-encoded message bodies are
decoded first.

On Redis, a message a worker has taken and not yet acknowledged (running, or a retry waiting for
its countdown) is in that worker's held hash on the broker (reliable fetch), so it is scanned
there while a retry is held.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from spark_integrations.constants import REDIS_FETCH_PREFIX
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    client_app,
    dead_letters,
    outcome,
    run_cli,
    send_call,
    server_env,
    start_sandbox,
    start_workers,
    wait_for,
)

pytestmark = pytest.mark.server
_B64 = re.compile(rb"[A-Za-z0-9+/=_-]{16,}")
#: Reliable fetch's hash of each consumer's held messages: delivery tag -> [list, message].
HELD = REDIS_FETCH_PREFIX + "held:"


def _decoded(blob: bytes) -> bytes:
    out = [blob]
    for match in _B64.finditer(blob):
        chunk = match.group(0)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                out.append(decode(chunk + b"=" * (-len(chunk) % 4)))
            except (binascii.Error, ValueError):
                continue
    return b"".join(out)


def redis_dump(url: str) -> bytes:
    """Every key and value of a Redis database, as one blob."""
    client = redis.Redis.from_url(url)
    parts: list[bytes] = []
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            parts.append(key)
            if kind == "string":
                parts.append(client.get(key) or b"")
            elif kind == "list":
                parts.extend(client.lrange(key, 0, -1))
            elif kind == "hash":
                for field, value in client.hgetall(key).items():
                    parts += [field, value]
            elif kind == "set":
                parts.extend(client.smembers(key))
            elif kind == "zset":
                parts.extend(m for m, _ in client.zrange(key, 0, -1, withscores=True))
    finally:
        client.close()
    return _decoded(b"\n".join(parts))


def held_with_a_retry(url: str) -> bytes:
    """The messages the workers hold on a Redis broker, decoded as one blob, if one of them is
    a retry of a call; else nothing. Held messages are in reliable fetch's held hashes (and in
    kombu's ``unacked`` hash, had a worker taken one with kombu's own fetch)."""
    client = redis.Redis.from_url(url)
    try:
        raw = [v for key in client.scan_iter(match=HELD + "*") for v in client.hvals(key)]
        raw += client.hvals("unacked")
    finally:
        client.close()

    def is_retry(entry: bytes) -> bool:
        # Held: [list, message]; kombu's unacked: [message, exchange, routing key].
        message = next(part for part in json.loads(entry) if isinstance(part, dict))
        headers = message.get("headers") or {}
        return headers.get("task") == "integrations.call" and (headers.get("retries") or 0) >= 1

    if not any(is_retry(entry) for entry in raw):
        return b""
    return _decoded(b"\n".join(raw))


def rabbitmq_queued(amqp_url: str, queue: str) -> tuple[int, bytes]:
    """Every message queued in ``queue`` of a RabbitMQ broker (headers, properties and body,
    decoded), and how many there are. Each is taken unacknowledged and goes back to the queue
    when the channel closes."""
    from kombu import Connection

    parts: list[bytes] = []
    count = 0
    with Connection(amqp_url, connect_timeout=10) as conn:
        channel = conn.channel()
        try:
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                count += 1
                parts.append(json.dumps(message.properties, default=str).encode())
                body = message.body
                parts.append(body.encode() if isinstance(body, str) else bytes(body))
        finally:
            channel.close()
    return count, _decoded(b"\n".join(parts))


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_env(
    request: pytest.FixtureRequest, short_tmp: Path, redis_url: str, postgres_url: str
) -> Iterator[dict[str, str]]:
    """Server mode with a Redis or a RabbitMQ broker (Redis for results and coordination)."""
    broker = redis_url if request.param == "redis" else request.getfixturevalue("amqp_url")
    env = server_env(
        short_tmp / "home", broker=broker, redis_url=redis_url, database_url=postgres_url
    )
    up = run_cli(env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    env["TEST_BROKER"] = request.param
    yield env


def queued_messages(env: dict[str, str], results: list[Any]) -> bytes:
    """What the broker holds while the calls wait for a worker; checks it holds all of them."""
    if env["TEST_BROKER"] == "rabbitmq":
        count, blob = rabbitmq_queued(env["SPARK_INTEGRATIONS_BROKER_URL"], "integrations.calls")
    else:
        client = redis.Redis.from_url(env["SPARK_INTEGRATIONS_BROKER_URL"])
        try:
            count = int(client.llen("integrations.calls"))
        finally:
            client.close()
        blob = redis_dump(env["SPARK_INTEGRATIONS_BROKER_URL"])
    # The scan sees the messages themselves: one per call, each naming its task id.
    assert count == len(results), (count, len(results))
    assert all(r.id.encode() in blob for r in results)
    return blob


def test_no_secret_reaches_the_broker_redis_results_dead_letters_or_logs(
    broker_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = broker_env
    api_key = "sk-live-" + uuid.uuid4().hex
    wrong_key = "sk-wrong-" + uuid.uuid4().hex
    password = "pw-" + uuid.uuid4().hex
    secrets = (api_key, wrong_key, password)
    box = start_sandbox(
        env,
        short_tmp,
        processes,
        f"--api-key={api_key}",
        f"--client-secret={password}",
        "--fault-rate=0.3",
        "--slow-seconds=0.2",
    )
    good = add_connection(
        env, "good", {"base_url": box.url, "rate_limit": 500}, f"api_key={api_key}"
    )
    basic = add_connection(
        env,
        "basic",
        {"base_url": box.url, "rate_limit": 500},
        "username=sandbox",
        f"password={password}",
    )
    wrong = add_connection(env, "wrong", {"base_url": box.url}, f"api_key={wrong_key}")
    app = client_app(env)
    results = [send_call(app, good, "create_message", {"text": f"g{i}"}) for i in range(40)]
    results += [send_call(app, basic, "create_message", {"text": f"b{i}"}) for i in range(20)]
    results += [
        send_call(app, good, "create_message_unkeyed", {"text": f"u{i}"}) for i in range(20)
    ]
    results += [send_call(app, wrong, "create_message", {"text": "w"}, key="w-1")]

    # No worker yet: every message waits in the broker, where it is scanned.
    queued = queued_messages(env, results)
    for secret in secrets:
        assert secret.encode() not in queued, "a secret is in a queued message"

    start_workers(env, short_tmp, processes, concurrency=2)
    if env["TEST_BROKER"] == "redis":
        # Messages a worker holds (running, or a retry waiting for its countdown) sit in its
        # held hash on the broker: scan them there, as soon as a retry is among them, and the
        # whole broker database again.
        url = env["SPARK_INTEGRATIONS_BROKER_URL"]
        held = wait_for(lambda: held_with_a_retry(url), 120, "a retry held by a worker")
        waiting = held + redis_dump(url)
        assert any(r.id.encode() in held for r in results), "the held messages are not the calls"
        for secret in secrets:
            assert secret.encode() not in waiting, "a secret is in a message waiting to retry"

    outcomes = [outcome(r, timeout=240) for r in results]
    assert sum(ok for ok, _ in outcomes) >= 40
    refused = outcomes[-1]
    assert not refused[0] and "refused the credentials" in refused[1]

    letters = json.dumps(dead_letters(env)).encode()
    dump = redis_dump(env["SPARK_INTEGRATIONS_REDIS_URL"])
    assert b"celery-task-meta" in dump  # the scan sees the results
    logs = b"".join(p.log.read_bytes() for p in processes if isinstance(p, FleetProcess))
    assert b"integrations.call" in logs
    for secret in secrets:
        needle = secret.encode()
        assert needle not in dump, "a secret is in Redis"
        assert needle not in letters, "a secret is in the dead letters"
        assert needle not in logs, "a secret is in a worker's log"
        for _ok, value in outcomes:
            assert secret not in json.dumps(value, default=str), "a secret is in a task's outcome"
