"""Fixtures shared by unit and integration tests: a clean environment and the real services.

Server-mode tests use this machine's PostgreSQL, Redis and RabbitMQ on their default ports.
Locally a missing service skips those tests; under ``CI=true`` it fails them, so CI cannot go
green by skipping.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from cryptography.fernet import Fernet

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_DSN = os.environ.get(
    "TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
REDIS_HOST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def service_missing(what: str, exc: BaseException) -> None:
    """Skip locally, fail under CI=true."""
    message = f"{what} is not reachable ({exc})"
    if IN_CI:
        pytest.fail(message + "; CI needs it", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SPARK_INTEGRATIONS_* variable but a fresh HOME; returns that HOME."""
    for name in list(os.environ):
        if name.startswith("SPARK_INTEGRATIONS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("SPARK_INTEGRATIONS_HOME", str(home))
    return home


@pytest.fixture
def fernet_key() -> str:
    """A fresh Fernet key."""
    return Fernet.generate_key().decode()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"spark_int_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        service_missing("PostgreSQL on 127.0.0.1:5432", exc)
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from store.engine import _engines

        for key in [k for k in _engines if name in k[1]]:
            _engines.pop(key).dispose()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_REDIS_DBS = itertools.cycle(range(1, 12))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A flushed database of the machine's Redis (1 to 11; 12 to 15 belong to conformance)."""
    db = next(_REDIS_DBS)
    url = f"{REDIS_HOST_URL}/{db}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.flushdb()
    except redis.RedisError as exc:
        service_missing("Redis on 127.0.0.1:6379", exc)
        raise
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def amqp_url() -> str:
    """The machine's RabbitMQ, its fleet queues purged."""
    from kombu import Connection

    from constants import ALL_QUEUES

    try:
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()
            for queue in ALL_QUEUES:
                try:
                    channel.queue_purge(queue)
                except Exception:  # a queue not declared yet: nothing to purge
                    channel = conn.channel()
    except Exception as exc:
        service_missing("RabbitMQ on 127.0.0.1:5672", exc)
        raise
    return AMQP_URL
