"""No secret in task arguments, results, errors, Redis or logs (CONTRACT.md).

Calls run with known secret values (an API key, a basic-auth password, a wrong key that the
provider refuses), some failing on purpose; then every Redis key and value (broker queues,
results, coordination state), the dead letters and the workers' logs are scanned for them,
kombu's base64-encoded message bodies decoded first.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    client_app,
    dead_letters,
    outcome,
    send_call,
    start_sandbox,
    start_workers,
)

pytestmark = pytest.mark.server
_B64 = re.compile(rb"[A-Za-z0-9+/=_-]{16,}")


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


def test_no_secret_reaches_redis_results_dead_letters_or_logs(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    api_key = "sk-live-" + uuid.uuid4().hex
    wrong_key = "sk-wrong-" + uuid.uuid4().hex
    password = "pw-" + uuid.uuid4().hex
    box = start_sandbox(
        redis_env,
        short_tmp,
        processes,
        f"--api-key={api_key}",
        f"--client-secret={password}",
        "--fault-rate=0.3",
        "--slow-seconds=0.2",
    )
    good = add_connection(
        redis_env, "good", {"base_url": box.url, "rate_limit": 500}, f"api_key={api_key}"
    )
    basic = add_connection(
        redis_env,
        "basic",
        {"base_url": box.url, "rate_limit": 500},
        "username=sandbox",
        f"password={password}",
    )
    wrong = add_connection(redis_env, "wrong", {"base_url": box.url}, f"api_key={wrong_key}")
    start_workers(redis_env, short_tmp, processes, concurrency=2)
    app = client_app(redis_env)
    results = [send_call(app, good, "create_message", {"text": f"g{i}"}) for i in range(40)]
    results += [send_call(app, basic, "create_message", {"text": f"b{i}"}) for i in range(20)]
    results += [
        send_call(app, good, "create_message_unkeyed", {"text": f"u{i}"}) for i in range(20)
    ]
    results += [send_call(app, wrong, "create_message", {"text": "w"}, key="w-1")]
    outcomes = [outcome(r, timeout=240) for r in results]
    assert sum(ok for ok, _ in outcomes) >= 40
    refused = outcomes[-1]
    assert not refused[0] and "refused the credentials" in refused[1]

    letters = json.dumps(dead_letters(redis_env)).encode()
    dump = redis_dump(redis_env["SPARK_INTEGRATIONS_REDIS_URL"])
    assert b"integrations.call" in dump or b"celery-task-meta" in dump  # the scan sees messages
    logs = b"".join(p.log.read_bytes() for p in processes if isinstance(p, FleetProcess))
    assert b"integrations.call" in logs
    for secret in (api_key, wrong_key, password):
        needle = secret.encode()
        assert needle not in dump, "a secret is in Redis"
        assert needle not in letters, "a secret is in the dead letters"
        assert needle not in logs, "a secret is in a worker's log"
        for _ok, value in outcomes:
            assert secret not in json.dumps(value, default=str), "a secret is in a task's outcome"
