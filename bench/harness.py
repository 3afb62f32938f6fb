"""Processes for benchmarks: the sandbox, fleet workers and plain Celery workers, on real services.

Everything runs on a ``redis-server`` of the benchmark's own, started on a free port for each
run (every database of the machine's Redis belongs to the tests and the conformance checks, which
keep their leases in database 0), or on ``BENCH_REDIS_URL`` when set, and on this machine's
PostgreSQL (a database created for the run and dropped after), the fleet in server mode, as in
production. A comparison of several fleets at once (``bench.fetch``) puts each fleet's broker on
a database of that Redis of its own (1, 2, 3, ..., flushed before and after).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import requests
from celery import Celery
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("spark-integrations"))
GIVEN_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
EXTRA_FLEET_ARGS = os.environ.get("BENCH_FLEET_ARGS", "").split()
LOGS = Path(os.environ.get("BENCH_LOGS", "/tmp/spark-int-bench"))


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Proc:
    """A background process in its own session, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{name}.log"
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                args,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextlib.contextmanager
def own_redis() -> Iterator[str]:
    """The URL of a Redis for one run: ``BENCH_REDIS_URL`` (flushed), or a server of our own."""
    if GIVEN_REDIS_URL:
        yield GIVEN_REDIS_URL
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    LOGS.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(LOGS), "--logfile", str(LOGS / "redis.log")],
        start_new_session=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _answers(url), 15, "the benchmark's redis-server")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def fleet_env() -> Iterator[dict[str, str]]:
    """A server-mode environment on a fresh PostgreSQL database and an empty Redis."""
    with own_redis() as redis_url:
        yield from _fleet_env(redis_url)


def _fleet_env(redis_url: str) -> Iterator[dict[str, str]]:
    name = f"spark_int_bench_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_INTEGRATIONS_")}
    env.update(
        SPARK_INTEGRATIONS_HOME=str(LOGS / "home"),
        SPARK_INTEGRATIONS_BROKER_URL=redis_url,
        SPARK_INTEGRATIONS_RESULT_BACKEND=redis_url,
        SPARK_INTEGRATIONS_REDIS_URL=redis_url,
        SPARK_INTEGRATIONS_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        SPARK_INTEGRATIONS_SECRET_KEYS=Fernet.generate_key().decode(),
        BENCH_BROKER=redis_url,
        PYTHONPATH=str(ROOT),
    )
    subprocess.run([CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
    try:
        yield env
    finally:
        client.flushdb()
        client.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Sandbox(Proc):
    """``spark-integrations sandbox`` on a free port."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        super().__init__([CLI, "sandbox", "--port=0", *args], env, "sandbox")
        found = wait_for(
            lambda: re.search(r"listening on (http://\S+)", self.text()), 30, "the sandbox"
        )
        self.url = found.group(1)

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(self.url + "/_sandbox/stats", timeout=10).json())

    def reset(self) -> None:
        requests.post(self.url + "/_sandbox/reset", timeout=10)


def add_connection(env: dict[str, str], name: str, config: dict[str, Any], key: str) -> str:
    out = subprocess.run(
        [
            CLI,
            "connections",
            "add",
            "sandbox",
            "--name",
            name,
            "--config",
            json.dumps(config),
            "--secret",
            f"api_key={key}",
            "--json",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(out.stdout)["id"])


def with_db(url: str, db: int) -> str:
    """The Redis URL ``url`` on database ``db``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def fleet_workers(
    env: Mapping[str, str], count: int, concurrency: int, name: str = "bench"
) -> list[Proc]:
    """``count`` fleet workers on the calls queue, named ``{name}{i}@host``."""
    procs = [
        Proc(
            [
                CLI,
                "worker",
                "--queues=integrations.calls",
                f"--concurrency={concurrency}",
                "--",
                f"--hostname={name}{i}@%h",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=WARNING",
                *EXTRA_FLEET_ARGS,
            ],
            dict(env),
            f"fleet-worker{i}" if name == "bench" else f"{name}-worker{i}",
        )
        for i in range(count)
    ]
    return procs


def plain_workers(
    env: Mapping[str, str], count: int, concurrency: int, name: str = "plain"
) -> list[Proc]:
    """``count`` plain Celery workers of ``bench.plain_app``, named ``{name}{i}@host``."""
    return [
        Proc(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.plain_app",
                "worker",
                "-Q",
                "bench.plain",
                f"--concurrency={concurrency}",
                f"--hostname={name}{i}@%h",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=WARNING",
            ],
            dict(env),
            f"{name}-worker{i}",
        )
        for i in range(count)
    ]


def wait_workers(app: Any, count: int, name: str = "") -> None:
    """Until ``count`` workers (those whose name starts with ``name``) answer a ping."""

    def answering() -> int:
        replies = app.control.ping(timeout=0.5) or []
        return sum(1 for reply in replies for host in reply if host.startswith(name))

    wait_for(lambda: answering() >= count, 60, f"workers {name}".strip())


def client_app(env: Mapping[str, str]) -> Celery:
    """A Celery client of the fleet's broker and backend, JSON only, as spark builds one."""
    app = Celery(
        "bench-client",
        broker=env["SPARK_INTEGRATIONS_BROKER_URL"],
        backend=env["SPARK_INTEGRATIONS_RESULT_BACKEND"],
    )
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    return app
