"""The fleet in each of its modes: embedded, server on Redis, server on RabbitMQ."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.integration.fleet import (
    OPEN_CLIENTS,
    FleetProcess,
    base_env,
    run_cli,
    server_env,
    stop_embedded_redis,
)


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short folder (unix socket paths are limited to 107 bytes)."""
    return tmp_path_factory.mktemp("f", numbered=True)


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Close the broker and backend connections of every client app a test made.

    Each is closed whatever happened to the others; then the garbage is collected here, so a
    socket a failed (or timed-out) test left behind is reported against that test, not as a
    ``ResourceWarning`` in whichever test happens to run next.
    """
    yield
    errors: list[BaseException] = []
    while OPEN_CLIENTS:
        try:
            close_client(OPEN_CLIENTS.pop())
        except Exception as exc:  # close the others first, then report
            errors.append(exc)
    gc.collect()
    if errors:
        raise errors[0]


def close_client(app: Celery) -> None:
    """Close one client app, its result backend's pub/sub connection and pool included."""
    try:
        # The Redis result backend keeps a pub/sub connection and a pool of its own that
        # app.close() leaves open; closing them here keeps unclosed sockets out of later tests.
        backend = app.__dict__.get("backend")
        consumer = getattr(backend, "result_consumer", None)
        if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
            consumer._pubsub.close()
        client = getattr(backend, "client", None)
        if client is not None:
            client.connection_pool.disconnect()
    finally:
        app.close()


@pytest.fixture
def processes() -> Iterator[list[FleetProcess]]:
    """Fleet processes started by a test; each is stopped afterwards, whatever happened."""
    started: list[FleetProcess] = []
    yield started
    stop_all(started)


def stop_all(started: list[Any]) -> None:
    """Kill every process a test left running (workers, beats, sandboxes), even when killing
    one fails. Tests that need a graceful stop (to read what a process logs as it stops) call
    its ``stop()`` themselves."""
    errors: list[BaseException] = []
    for proc in reversed(started):
        try:
            proc.kill() if hasattr(proc, "kill") else proc.stop()
        except Exception as exc:  # stop the others first, then report
            errors.append(exc)
    if errors:
        raise errors[0]


MODES = [
    "embedded",
    pytest.param("redis", marks=pytest.mark.server),
    pytest.param("rabbitmq", marks=pytest.mark.server),
]


@pytest.fixture(params=MODES)
def fleet_env(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[dict[str, str]]:
    """A fleet environment in one mode, its store migrated; the embedded Redis stopped after."""
    home = short_tmp / "home"
    if request.param == "embedded":
        env = base_env(home)
    else:
        redis_url = request.getfixturevalue("redis_url")
        database_url = request.getfixturevalue("postgres_url")
        broker = redis_url if request.param == "redis" else request.getfixturevalue("amqp_url")
        env = server_env(home, broker=broker, redis_url=redis_url, database_url=database_url)
        up = run_cli(env, "db", "upgrade")
        assert up.returncode == 0, up.stderr
    env["TEST_FLEET_MODE"] = request.param
    yield env
    if request.param == "embedded":
        stop_embedded_redis(env)


@pytest.fixture
def redis_env(short_tmp: Path, redis_url: str, postgres_url: str) -> dict[str, str]:
    """Server mode on this machine's Redis (broker, results, coordination) and PostgreSQL."""
    env = server_env(
        short_tmp / "home", broker=redis_url, redis_url=redis_url, database_url=postgres_url
    )
    up = run_cli(env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    return env


@pytest.fixture(scope="session")
def real_spark() -> Iterator[Any]:
    """The real automagik-spark 0.3.7 (installed once, cached), started once per test process
    and stopped at its end (tests/integration/real_spark.py)."""
    from tests.integration.real_spark import start_real_spark

    spark = start_real_spark()
    try:
        yield spark
    finally:
        spark.stop()
