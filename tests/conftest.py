"""Fixtures shared by unit and integration tests: a clean environment and the real services.

Server-mode tests use this machine's PostgreSQL, Redis and RabbitMQ on their default ports.
Locally a missing service skips those tests; under ``CI=true`` it fails them, so CI cannot go
green by skipping.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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

# Under pytest-xdist each test process gets its own share of the services, so that tests running
# side by side never see each other's queues or keys: a disjoint set of Redis databases and a
# RabbitMQ vhost of its own (PostgreSQL databases have random names already). Other test
# sessions may run on the same machine at the same time (several people, or CI beside a
# subset): each Redis database a test uses is leased in database 0 for the test's length, and
# each session's vhosts carry its pid, so two sessions never share a database or a vhost either.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
XDIST_INDEX = int(XDIST_WORKER[2:]) if XDIST_WORKER.startswith("gw") else 0
XDIST_COUNT = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
# Databases 1 to 11 belong to the tests (12 to 15 to the conformance checks).
TEST_REDIS_DBS = range(1, 12)


# No test may fall back to the user's own embedded HOME ($XDG_DATA_HOME/spark-integrations):
# every process and session on the machine would share its store, keys and Redis. Code run in a
# test process without a HOME of its own gets this process's private one.
if "SPARK_INTEGRATIONS_HOME" not in os.environ:
    _PRIVATE_HOME = tempfile.mkdtemp(prefix=f"spark-int-test-home-{XDIST_WORKER or 'main'}-")
    os.environ["SPARK_INTEGRATIONS_HOME"] = _PRIVATE_HOME
    atexit.register(shutil.rmtree, _PRIVATE_HOME, ignore_errors=True)


def redis_dbs_of_this_process(index: int = XDIST_INDEX, count: int = XDIST_COUNT) -> list[int]:
    """This test process's share of the Redis databases: every count-th one from its index."""
    if count > len(TEST_REDIS_DBS):
        raise RuntimeError(f"at most {len(TEST_REDIS_DBS)} test processes share this Redis")
    return [db for i, db in enumerate(TEST_REDIS_DBS) if i % count == index]


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
        from spark_integrations.store.engine import dispose_engines

        dispose_engines(name)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: Where the leases live (database 0 holds no test's data), and how long one lasts at most.
LEASE_KEY = "spark-int-test:redis-db:{db}"
LEASE_SECONDS = 1800
_LEASE_OWNER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def lease_redis_db(client: redis.Redis, wait: float = 120.0) -> int:
    """A test database no other test (of any session on this machine) is using, leased.

    This process's share comes first, so the processes of one session never wait on each other.
    """
    share = redis_dbs_of_this_process()
    order = share + [db for db in TEST_REDIS_DBS if db not in share]
    deadline = time.monotonic() + wait
    while True:
        for db in order:
            if client.set(LEASE_KEY.format(db=db), _LEASE_OWNER, nx=True, ex=LEASE_SECONDS):
                return db
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis databases {order} all stayed leased for {wait:.0f} s")
        time.sleep(0.5)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A flushed database of the machine's Redis, from 1 to 11 (this test process's share first),
    leased for the test."""
    try:
        leases = redis.Redis.from_url(f"{REDIS_HOST_URL}/0", socket_connect_timeout=3)
        db = lease_redis_db(leases)
        url = f"{REDIS_HOST_URL}/{db}"
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.flushdb()
    except redis.RedisError as exc:
        service_missing("Redis on 127.0.0.1:6379", exc)
        raise
    try:
        yield url
    finally:
        try:
            client.flushdb()
        finally:
            client.close()
            leases.eval(_RELEASE, 1, LEASE_KEY.format(db=db), _LEASE_OWNER)
            leases.close()


#: This test process's vhost: its xdist name and pid, so no other session can share it.
VHOST = f"spark_int_test_{XDIST_WORKER or 'main'}_{os.getpid()}"
_VHOST_PID = re.compile(r"^spark_int_test_\w+?_(\d+)$")


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)


def _drop_vhosts_of_dead_sessions() -> None:
    """Delete the vhosts earlier test processes left behind (killed before their cleanup)."""
    listed = _rabbitmqctl("list_vhosts")
    for name in listed.stdout.split():
        found = _VHOST_PID.match(name)
        if found is None or name == VHOST:
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            _rabbitmqctl("delete_vhost", name)
        except PermissionError:
            continue  # alive, another user's


def _own_vhost() -> str:
    """The RabbitMQ URL of this test process: a vhost of its own."""
    vhost = VHOST
    _drop_vhosts_of_dead_sessions()
    for command in (
        ["add_vhost", vhost],
        ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
    ):
        done = _rabbitmqctl(*command)
        if done.returncode != 0 and "already exists" not in done.stdout + done.stderr:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
    parts = urlsplit(AMQP_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))


@pytest.fixture(scope="session")
def amqp_base_url() -> Iterator[str]:
    """This test process's RabbitMQ vhost (made once a session, deleted at its end)."""
    try:
        url = _own_vhost()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        service_missing("rabbitmqctl (a RabbitMQ vhost per test process)", exc)
        raise
    yield url
    _rabbitmqctl("delete_vhost", VHOST)


@pytest.fixture
def amqp_url(amqp_base_url: str) -> str:
    """The machine's RabbitMQ in this test process's vhost, its fleet queues purged."""
    from kombu import Connection

    from spark_integrations.constants import ALL_QUEUES

    try:
        with Connection(amqp_base_url, connect_timeout=5) as conn:
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
    return amqp_base_url
