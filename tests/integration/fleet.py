"""Real fleet processes for integration tests: workers and commands run as subprocesses.

Nothing here runs a task in the test process: tasks are sent by name through the real broker,
as spark sends them, and run in real worker processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from cryptography.fernet import Fernet

from spark_integrations.constants import QUEUE_MAINTENANCE, REDIS_FETCH_PREFIX

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("spark-integrations"))


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without SPARK_INTEGRATIONS_*, plus HOME and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_INTEGRATIONS_")}
    env["SPARK_INTEGRATIONS_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)  # lets workers import tests.integration.probe_tasks
    env.update(extra)
    return env


def server_env(
    home: Path, *, broker: str, redis_url: str, database_url: str, **extra: str
) -> dict[str, str]:
    """A server-mode environment on the given services."""
    return base_env(
        home,
        SPARK_INTEGRATIONS_BROKER_URL=broker,
        SPARK_INTEGRATIONS_RESULT_BACKEND=redis_url,
        SPARK_INTEGRATIONS_REDIS_URL=redis_url,
        SPARK_INTEGRATIONS_DATABASE_URL=database_url,
        SPARK_INTEGRATIONS_SECRET_KEYS=Fernet.generate_key().decode(),
        **extra,
    )


def run_cli(env: Mapping[str, str], *args: str, stdin: str | None = None, timeout: float = 60):
    """Run ``spark-integrations ARGS`` to completion; returns the CompletedProcess."""
    return subprocess.run(
        [CLI, *args],
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class FleetProcess:
    """A long-running fleet command (worker, beat) in its own process group."""

    env: dict[str, str]
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> FleetProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [CLI, *self.args],
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        fh.close()
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, marker: str = "ready.", timeout: float = 60) -> FleetProcess:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args[0]} exited early:\n{self.output()[-3000:]}")
            return marker in self.output()

        wait_for(ready, timeout, f"{self.args[0]} to log {marker!r}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self) -> list[int]:
        """Pids of the process's direct children (the prefork pool)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def kill_main(self) -> None:
        """SIGKILL the main process, then its orphaned pool: a host that died."""
        children = self.children()
        os.kill(self.pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop it as an operator would (SIGTERM: a warm shutdown), SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL its whole process group at once: the end of a test, nothing left to wait for
        (a warm shutdown costs seconds a process; the next test uses other databases)."""
        kill_group(self.proc)


def worker(env: dict[str, str], log: Path, *extra: str, concurrency: int = 1) -> FleetProcess:
    """A worker on every fleet queue that also knows the probe tasks."""
    return FleetProcess(
        env,
        [
            "worker",
            f"--concurrency={concurrency}",
            "--",
            "--include=tests.integration.probe_tasks",
            "--without-mingle",
            "--without-gossip",
            *extra,
        ],
        log,
    )


OPEN_CLIENTS: list[Celery] = []


def client_app(env: Mapping[str, str]) -> Celery:
    """A Celery app as spark builds one: only the broker and backend URLs, JSON only.

    Closed after the test by the ``close_clients`` fixture."""
    from spark_integrations import settings

    s = settings.load(env)
    app = Celery("spark-client", broker=s.broker_url, backend=s.result_backend)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": s.visibility_timeout},
    )
    OPEN_CLIENTS.append(app)
    return app


def broker_idle(env: Mapping[str, str], *queues: str) -> bool:
    """True when a Redis broker holds no message of ``queues``, queued or unacknowledged.

    Tasks are acknowledged late (when they end), and a retry is a new message sent before the
    old one is acknowledged: so an idle broker means every task sent to those queues has ended,
    its retries included. An event to wait for, instead of sleeping "long enough".
    """
    import redis

    client = redis.Redis.from_url(env["SPARK_INTEGRATIONS_BROKER_URL"])
    try:
        for queue in queues:
            # kombu keeps one list per priority step: the queue's name, then name + \x06\x16 + n.
            for key in client.scan_iter(match=f"{queue}*"):
                if client.type(key) == b"list" and client.llen(key):
                    return False
        # Reliable fetch's held hashes (a dead worker's until they are reclaimed): delivery
        # tag -> [list the message was taken from, message].
        for key in client.scan_iter(match=f"{REDIS_FETCH_PREFIX}held:*"):
            if any(json.loads(raw)[0].split("\x06\x16")[0] in queues for raw in client.hvals(key)):
                return False
        # kombu's unacked hash (its own fetch): delivery tag -> [message, exchange, routing key].
        return not any(json.loads(raw)[2] in queues for raw in client.hvals("unacked"))
    finally:
        client.close()


def stop_embedded_redis(env: Mapping[str, str]) -> None:
    """Stop the embedded Redis of ``env``'s HOME at once, for clean-up: SIGTERM (it writes its
    append-only file and exits), then wait for it to be gone. ``spark-integrations down``
    itself is tested in test_embedded.py; as a clean-up it costs seconds each time."""
    pidfile = Path(env["SPARK_INTEGRATIONS_HOME"]) / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return  # no server of this HOME is running

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 30, "the embedded Redis to stop", interval=0.01)


def redis_list(client: Any, key: str) -> list[dict[str, Any]]:
    return [json.loads(v) for v in client.lrange(key, 0, -1)]


def send_probe(app: Celery, **kwargs: Any) -> Any:
    return app.send_task("tests.probe", kwargs=kwargs, queue=QUEUE_MAINTENANCE)


@dataclass
class SandboxProcess:
    """``spark-integrations sandbox`` in its own process, on a free port."""

    env: dict[str, str]
    log: Path
    args: tuple[str, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    url: str = ""

    def start(self, timeout: float = 30) -> SandboxProcess:
        import re

        fh = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [CLI, "sandbox", f"--port={self.port}", *self.args],
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        fh.close()

        def listening() -> str | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"sandbox exited early:\n{self.log.read_text()[-2000:]}")
            found = re.search(r"listening on (http://\S+)", self.log.read_text(errors="replace"))
            return found.group(1) if found else None

        self.url = wait_for(listening, timeout, "the sandbox to listen")
        return self

    def stats(self) -> dict[str, Any]:
        import requests

        return requests.get(self.url + "/_sandbox/stats", timeout=10).json()

    def messages(self) -> list[dict[str, Any]]:
        import requests

        return requests.get(self.url + "/_sandbox/messages", timeout=30).json()

    def control(self, path: str, **body: Any) -> dict[str, Any]:
        """``POST /_sandbox/PATH`` with ``body``; the answer, which must be a success."""
        import requests

        answer = requests.post(f"{self.url}/_sandbox/{path}", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def hold(self, *scopes: str) -> None:
        """Hold the provider's requests of ``scopes`` (api, token) until :meth:`release`."""
        self.control("hold", scopes=list(scopes))

    def release(self) -> None:
        """Let every held request go on."""
        self.control("hold", scopes=[])

    def faults(self, rate: float, *kinds: str) -> None:
        """Inject faults of ``kinds`` (the sandbox's defaults when none) at ``rate`` from now."""
        self.control("faults", rate=rate, **({"kinds": list(kinds)} if kinds else {}))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL it at once (the end of a test)."""
        kill_group(self.proc)


def kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a process started in a session of its own, with its whole group; reap it."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_connection(
    env: Mapping[str, str],
    name: str,
    config: Mapping[str, Any],
    *secrets: str,
    provider: str = "sandbox",
) -> str:
    """``connections add PROVIDER`` through the command line; returns the connection id."""
    args = ["connections", "add", provider, "--name", name, "--config", json.dumps(config)]
    for secret in secrets:
        args += ["--secret", secret]
    done = run_cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def send_call(
    app: Celery,
    connection_id: str,
    action: str,
    params: Mapping[str, Any] | None = None,
    key: str | None = None,
    **extra: Any,
) -> Any:
    """Send integrations.call by name, as spark does."""
    kwargs: dict[str, Any] = {"connection_id": connection_id, "action": action, **extra}
    if params is not None:
        kwargs["params"] = dict(params)
    if key is not None:
        kwargs["idempotency_key"] = key
    return app.send_task("integrations.call", kwargs=kwargs, queue="integrations.calls")


def outcome(result: Any, timeout: float = 180) -> tuple[bool, Any]:
    """(True, value) for a successful task, (False, error text) for a failed one."""
    try:
        return True, result.get(timeout=timeout)
    except Exception as exc:
        return False, str(exc)


def dead_letters(env: dict[str, str]) -> list[dict[str, Any]]:
    done = run_cli(env, "dlq", "list", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def start_sandbox(
    env: dict[str, str], tmp: Path, processes: list[Any], *args: str, port: int = 0
) -> SandboxProcess:
    box = SandboxProcess(env, tmp / f"sandbox-{uuid.uuid4().hex[:6]}.log", args, port=port)
    processes.append(box)
    return box.start()


def start_workers(
    env: dict[str, str], tmp: Path, processes: list[Any], count: int = 1, concurrency: int = 2
) -> list[FleetProcess]:
    started = []
    for i in range(count):
        proc = worker(env, tmp / f"worker{i}.log", f"--hostname=w{i}@%h", concurrency=concurrency)
        processes.append(proc)
        started.append(proc.start())
    for proc in started:
        proc.wait_ready()
    return started
