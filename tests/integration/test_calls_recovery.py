"""Calls that survive lost workers, provider outages and long waits (real workers, SIGKILL)."""

from __future__ import annotations

import os
import random
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from spark_integrations.coordination import RedisCircuitBreaker
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    client_app,
    dead_letters,
    free_port,
    outcome,
    run_cli,
    send_call,
    server_env,
    start_sandbox,
    start_workers,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]
API_KEY = "sk-recovery-" + uuid.uuid4().hex


@pytest.fixture
def quick_env(redis_env: dict[str, str]) -> dict[str, str]:
    """A short visibility timeout: a wait longer than half of it (6 s) is parked, not counted
    down in the broker."""
    return {
        **redis_env,
        "SPARK_INTEGRATIONS_VISIBILITY_TIMEOUT": "12",
        "SPARK_INTEGRATIONS_TASK_TIME_LIMIT": "10",
    }


@pytest.fixture(params=["rabbitmq", "redis"])
def broker_env(
    request: pytest.FixtureRequest, short_tmp: Path, redis_url: str, postgres_url: str
) -> dict[str, str]:
    """Server mode on RabbitMQ or on Redis (Redis for results and coordination either way).

    On Redis a short reclaim time: the messages a killed worker held come back within seconds.
    """
    broker = request.getfixturevalue("amqp_url") if request.param == "rabbitmq" else redis_url
    env = server_env(
        short_tmp / "home",
        broker=broker,
        redis_url=redis_url,
        database_url=postgres_url,
        SPARK_INTEGRATIONS_RECLAIM_AFTER="4",
    )
    up = run_cli(env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    return env


def test_killed_workers_lose_no_call_and_double_no_message(
    broker_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """SIGKILL a pool child, then a worker's main process, mid-run: every call completes once.

    On RabbitMQ the broker itself hands back what a dead connection held unacknowledged. On
    Redis the worker takes each message into a held hash of its own in one atomic step, and a
    living worker hands back the held messages of one that stopped proving alive.
    """
    box = start_sandbox(
        broker_env,
        short_tmp,
        processes,
        f"--api-key={API_KEY}",
        "--slow-seconds=0.5",
        "--fault-rate=0.05",
    )
    cid = add_connection(
        broker_env, "kills", {"base_url": box.url, "rate_limit": 25}, f"api_key={API_KEY}"
    )
    first, second = start_workers(broker_env, short_tmp, processes, count=2, concurrency=2)
    app = client_app(broker_env)
    results = [
        send_call(app, cid, "create_message", {"text": f"k{i}"}, key=f"kill-{i}")
        for i in range(250)
    ]
    wait_for(lambda: box.stats()["messages_created"] >= 40, 60, "the run to get going")
    children = second.children()
    assert children, "the worker has no pool children"
    os.kill(random.choice(children), signal.SIGKILL)
    wait_for(lambda: box.stats()["messages_created"] >= 120, 60, "the run to go on")
    first.kill_main()
    outcomes = [outcome(r, timeout=240) for r in results]
    assert all(ok for ok, _ in outcomes), [e for ok, e in outcomes if not ok][:3]
    texts = Counter(m["text"] for m in box.messages())
    assert len(texts) == 250
    assert max(texts.values()) == 1, "a message was created twice"


def test_breaker_opens_defers_and_recovers(
    redis_env: dict[str, str],
    short_tmp: Path,
    processes: list[Any],
) -> None:
    """A provider down: the breaker opens, calls wait (not fail), and all go through after."""
    port = free_port()
    config = {
        "base_url": f"http://127.0.0.1:{port}",
        "rate_limit": 1000,
        "breaker_fail_max": 3,
        "breaker_reset_timeout": 3,
        "retry_attempts": 8,
    }
    cid = add_connection(redis_env, "outage", config, f"api_key={API_KEY}")
    start_workers(redis_env, short_tmp, processes, count=2, concurrency=2)
    app = client_app(redis_env)
    results = [send_call(app, cid, "create_message", {"text": f"b{i}"}) for i in range(30)]
    client = redis.Redis.from_url(redis_env["SPARK_INTEGRATIONS_REDIS_URL"])
    breaker = RedisCircuitBreaker(client)
    try:
        wait_for(
            lambda: breaker.state(f"sandbox:{cid}")["state"] in ("open", "half_open"),
            60,
            "the breaker to open",
        )
        # Calls wait while it is open: none has failed.
        assert not [r for r in results if r.ready() and r.failed()]
        box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}", port=port)
        outcomes = [outcome(r, timeout=120) for r in results]
        assert all(ok for ok, _ in outcomes), [e for ok, e in outcomes if not ok][:3]
        assert breaker.state(f"sandbox:{cid}")["state"] == "closed"
        assert box.stats()["messages_created"] == 30
        assert dead_letters(redis_env) == []
    finally:
        client.close()


def test_a_wait_longer_than_a_safe_countdown_is_parked_and_released(
    quick_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """A breaker open longer than half the visibility timeout parks the call; beat releases it."""
    port = free_port()
    config = {
        "base_url": f"http://127.0.0.1:{port}",
        "breaker_fail_max": 1,
        "breaker_reset_timeout": 9,
    }
    cid = add_connection(quick_env, "parked", config, f"api_key={API_KEY}")
    start_workers(quick_env, short_tmp, processes, concurrency=1)
    app = client_app(quick_env)
    result = send_call(app, cid, "create_message", {"text": "parked"}, key="park-1")

    from sqlalchemy import create_engine, text

    engine = create_engine(quick_env["SPARK_INTEGRATIONS_DATABASE_URL"])
    try:

        def parked() -> bool:
            with engine.connect() as db:
                return bool(db.execute(text("SELECT count(*) FROM parked_calls")).scalar())

        wait_for(parked, 60, "the call to be parked")
        box = start_sandbox(quick_env, short_tmp, processes, f"--api-key={API_KEY}", port=port)
        beat = FleetProcess(quick_env, ["beat"], short_tmp / "beat.log")
        processes.append(beat)
        beat.start()
        answer = result.get(timeout=90)
        assert answer["ok"] is True and answer["data"]["text"] == "parked"
        assert not parked()
        assert box.stats()["messages_created"] == 1
    finally:
        engine.dispose()
