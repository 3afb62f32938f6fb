"""Webhook intake through a real gateway process while its store or its broker is stopped.

Each test stops only services of its own: a PostgreSQL cluster it creates (``initdb`` and
``pg_ctl`` on a free port, in a folder of its own) and a ``redis-server`` it starts on a free
port. The machine's shared services are never stopped.

* Store stopped: the gateway starts anyway (``/healthz`` 200, ``/readyz`` 503), answers webhooks
  503 while the store is down, 202 once it is back, and every delivery it answered 2xx is in the
  store and processed; a store stopped under load (a crash: ``pg_ctl -m immediate``) loses none.
* Broker stopped: deliveries are still answered 202 and stored; once the broker is back the
  sweep (beat, every 30 s) sends them and the worker processes each once.
"""

from __future__ import annotations

import base64
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from standardwebhooks.webhooks import Webhook

from spark_integrations.constants import QUEUE_WEBHOOKS
from tests.conftest import IN_CI, service_missing
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    broker_idle,
    free_port,
    run_cli,
    server_env,
    start_workers,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

SECRET = "whsec_" + base64.b64encode(b"integration-intake-key-32-bytes!").decode()


# --- a PostgreSQL and a Redis of the test's own ----------------------------------------------


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of one test, run as ``user`` (initdb refuses root)."""

    bin: Path
    folder: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.folder / "data"), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-o", options,
                  "-l", str(self.folder / "server.log"), "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", mode, "-w",
                  "stop")  # fmt: skip

    def running(self) -> bool:
        return (self.folder / "data" / "postmaster.pid").exists()


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _version(path: str) -> int:
    part = path.split("/")[4]
    return int(part) if part.isdigit() else 0


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL of this test alone, removed afterwards."""
    bin_dir = _postgres_bin()
    user = None
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as postgres
        user = "postgres" if shutil.which("runuser") and _user_exists("postgres") else None
    if bin_dir is None or (os.geteuid() == 0 and user is None):
        reason = "no initdb on this machine" if bin_dir is None else "root without a postgres user"
        if IN_CI:
            pytest.fail(f"a private PostgreSQL cannot be made here: {reason}; CI needs it")
        pytest.skip(f"a private PostgreSQL cannot be made here: {reason}")
    # Not under pytest's tmp folder: the postgres user must be able to reach it.
    folder = Path(tempfile.mkdtemp(prefix="spark-int-pg-"))
    if user:
        shutil.chown(folder, user)
    cluster = PrivatePostgres(bin_dir, folder, free_port(), user)
    try:
        cluster.init()
        cluster.start()
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        service_missing("a private PostgreSQL (initdb, pg_ctl)", exc)
    try:
        yield cluster
    finally:
        if cluster.running():
            cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class PrivateRedis:
    """A redis-server of one test, on a free port, keeping nothing on disk."""

    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_for(self._answers, 30, "the test's redis-server to answer")

    def _answers(self) -> bool:
        import redis

        try:
            with redis.Redis(port=self.port, socket_connect_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def private_redis(short_tmp: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        service_missing("redis-server", FileNotFoundError("redis-server is not installed"))
    server = PrivateRedis(free_port(), short_tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the sender -------------------------------------------------------------------------------


class Sender:
    """Posts signed Standard Webhooks deliveries to one connection and keeps what was answered."""

    def __init__(self, gateway: str, connection_id: str) -> None:
        self.url = f"{gateway}/webhooks/sandbox/{connection_id}"
        self.webhook = Webhook(SECRET)
        self.accepted: list[str] = []  # delivery ids answered 2xx
        self.statuses: list[int] = []
        self._lock = threading.Lock()

    def post(self, msg_id: str | None = None) -> tuple[str, int]:
        msg_id = msg_id or "msg_" + uuid.uuid4().hex
        body = f'{{"type": "item.updated", "data": {{"id": "{msg_id}"}}}}'.encode()
        now = time.time()
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": self.webhook.sign(msg_id, _utc(now), body),
        }
        try:
            status = requests.post(self.url, data=body, headers=headers, timeout=30).status_code
        except requests.RequestException:
            status = 0  # no answer: the sender would try again
        with self._lock:
            self.statuses.append(status)
            if 200 <= status < 300:
                self.accepted.append(msg_id)
        return msg_id, status


def _utc(stamp: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, tz=UTC)


def _status(base: str, path: str) -> int:
    try:
        return requests.get(base + path, timeout=10).status_code
    except requests.RequestException:
        return 0


def stored(database_url: str) -> dict[str, tuple[str, Any]]:
    """delivery id -> (status, enqueued_at) of every stored event."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=10) as conn:
        rows = conn.execute("SELECT delivery_id, status, enqueued_at FROM webhook_events")
        return {r[0]: (r[1], r[2]) for r in rows}


def start_gateway(env: dict[str, str], tmp: Path, processes: list[Any]) -> tuple[str, FleetProcess]:
    port = free_port()
    gateway = FleetProcess(env, ["gateway", f"--port={port}"], tmp / "gateway.log")
    processes.append(gateway)
    gateway.start().wait_ready("gateway listening on")
    return f"http://127.0.0.1:{port}", gateway


# --- the tests --------------------------------------------------------------------------------


def test_store_stopped_answers_503_and_no_acknowledged_event_is_lost(
    private_postgres: PrivatePostgres, redis_url: str, short_tmp: Path, processes: list[Any]
) -> None:
    pg = private_postgres
    env = server_env(short_tmp / "home", broker=redis_url, redis_url=redis_url,
                     database_url=pg.url)  # fmt: skip
    assert run_cli(env, "db", "upgrade").returncode == 0
    cid = add_connection(env, "hooks", {"base_url": "http://127.0.0.1:9"},
                         f"webhook_secret={SECRET}", "api_key=k")  # fmt: skip
    start_workers(env, short_tmp, processes)

    # The gateway starts while the store is stopped, and says it is not ready.
    pg.stop()
    base, gateway = start_gateway(env, short_tmp, processes)
    sender = Sender(base, cid)
    assert _status(base, "/healthz") == 200
    assert _status(base, "/readyz") == 503
    refused, status = sender.post()
    assert status == 503
    pg.start()
    wait_for(lambda: _status(base, "/readyz") == 200, 60, "/readyz to pass once the store is up")
    assert sender.post(refused)[1] == 202  # the sender's retry of the refused delivery

    # The store crashes under a steady stream of deliveries, and comes back.
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            sender.post()

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(sender.accepted) >= 30, 60, "deliveries accepted before the crash")
        pg.stop("immediate")
        down_since = len(sender.statuses)
        wait_for(lambda: sender.statuses[down_since:].count(503) >= 10, 60, "503s while down")
        assert _status(base, "/healthz") == 200 and _status(base, "/readyz") == 503
        pg.start()
        back = len(sender.accepted)
        wait_for(lambda: len(sender.accepted) >= back + 30, 120, "deliveries accepted again")
    finally:
        stop.set()
        for t in threads:
            t.join(60)

    assert set(sender.statuses) <= {202, 503}, sorted(set(sender.statuses))
    assert len(set(sender.accepted)) == len(sender.accepted)

    def all_processed() -> bool:
        events = stored(pg.url)
        return all(events.get(m, ("missing",))[0] == "processed" for m in sender.accepted)

    wait_for(all_processed, 180, "every acknowledged delivery to be stored and processed")
    # A delivery answered 503 may still be stored (the crash came between the commit and its
    # answer); the sender's retry then meets it as a repeat. Acknowledged ones are all there.
    assert set(sender.accepted) <= set(stored(pg.url))
    assert SECRET.split("_", 1)[1] not in gateway.output()


def test_broker_stopped_events_are_accepted_and_processed_once_it_is_back(
    private_redis: PrivateRedis,
    redis_url: str,
    postgres_url: str,
    short_tmp: Path,
    processes: list[Any],
) -> None:
    # The broker is the test's own Redis; coordination stays on the machine's (never stopped).
    env = server_env(short_tmp / "home", broker=private_redis.url, redis_url=redis_url,
                     database_url=postgres_url)  # fmt: skip
    env["SPARK_INTEGRATIONS_RESULT_BACKEND"] = private_redis.url
    assert run_cli(env, "db", "upgrade").returncode == 0
    cid = add_connection(env, "hooks", {"base_url": "http://127.0.0.1:9"},
                         f"webhook_secret={SECRET}", "api_key=k")  # fmt: skip
    [worker] = start_workers(env, short_tmp, processes)
    beat = FleetProcess(env, ["beat"], short_tmp / "beat.log")
    processes.append(beat)
    beat.start()
    base, _ = start_gateway(env, short_tmp, processes)
    sender = Sender(base, cid)
    first, status = sender.post()
    assert status == 202
    wait_for(lambda: stored(postgres_url)[first][0] == "processed", 60, "the first event processed")
    wait_for(lambda: broker_idle(env, QUEUE_WEBHOOKS), 60, "the first task to be acknowledged")

    private_redis.stop()
    down = [sender.post() for _ in range(20)]
    assert [status for _, status in down] == [202] * 20
    events = stored(postgres_url)
    assert all(events[m] == ("received", None) for m, _ in down)  # stored, never sent
    assert _status(base, "/readyz") == 503

    private_redis.start()
    assert worker.proc is not None
    if worker.proc.poll() is not None:
        # A worker acknowledging a task (beat's sweeps run every few seconds) just as its broker
        # dies exits with kombu's "Unrecoverable error: AttributeError ... 'hostname'"; a
        # supervisor (compose's restart policy, systemd) starts it again, as here.
        start_workers(env, short_tmp / "again", processes)
    wait_for(lambda: _status(base, "/readyz") == 200, 60, "/readyz to pass once the broker is up")
    after, status = sender.post()
    assert status == 202

    def all_processed() -> bool:
        events = stored(postgres_url)
        return all(events[m][0] == "processed" for m in [first, after, *(m for m, _ in down)])

    wait_for(all_processed, 150, "the events stored while the broker was down to be processed")
