"""``gateway --workers N``: stopping the first process stops them all; none outlives it, and
what each counted reaches the fleet's metrics.

Real processes of the command line, in server mode over a store and a broker that need not
answer (the gateway serves regardless). Each process logs uvicorn's "Started server process
[PID]", which is how the test learns the children's ids.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from spark_integrations import metrics

PROCESSES = 3
#: Generous: how long processes may take to start or to stop on a busy machine (a wait, not
#: an assertion on time).
PATIENCE = 60.0
STARTED = re.compile(r"Started server process \[(\d+)\]")
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
CLI = "from spark_integrations.workers.cli import main; main()"
#: The command line with the metrics thread's sends put off for an hour: counts reach Redis
#: only through a process's last flush.
CLI_FLUSHING_AT_EXIT = "import spark_integrations.metrics as m; m.FLUSH_EVERY = 3600.0; " + CLI
NOWHERE = "redis://127.0.0.1:1/0"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped; only its exit status is left


def _wait(until: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not until():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {PATIENCE:g} s")
        time.sleep(0.1)


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    pids: list[int]
    port: int

    def stopped(self) -> bool:
        return not any(_alive(pid) for pid in self.pids)


@pytest.fixture
def start(clean_env: Path, tmp_path: Path, fernet_key: str) -> Iterator[Callable[..., Gateway]]:
    """Starts a gateway of :data:`PROCESSES` processes; SIGKILLs what is left after the test."""
    started_here: list[subprocess.Popen[bytes]] = []

    def run(code: str = CLI, redis_url: str = NOWHERE) -> Gateway:
        env = {
            **os.environ,
            "SPARK_INTEGRATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
            "SPARK_INTEGRATIONS_BROKER_URL": NOWHERE,
            "SPARK_INTEGRATIONS_REDIS_URL": redis_url,
            "SPARK_INTEGRATIONS_SECRET_KEYS": fernet_key,
        }
        log = tmp_path / "gateway.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, "gateway", "--port", "0", "--workers", str(PROCESSES)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        started_here.append(proc)
        pids: list[int] = []

        def started() -> bool:
            pids[:] = [int(p) for p in STARTED.findall(log.read_text(errors="replace"))]
            return len(pids) == PROCESSES or proc.poll() is not None

        _wait(started, "the gateway's start")
        text = log.read_text(errors="replace")
        port = LISTENING.search(text)
        assert len(pids) == PROCESSES and proc.pid in pids and port is not None, text
        return Gateway(proc, pids, int(port.group(1)))

    try:
        yield run
    finally:
        for proc in started_here:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sigterm_to_the_first_process_stops_every_process(start: Callable[..., Gateway]) -> None:
    """uvicorn raises the SIGTERM it caught again after its shutdown: with the default handler
    the first process died there, before stopping its children, which went on serving."""
    gateway = start()
    os.kill(gateway.proc.pid, signal.SIGTERM)
    code = gateway.proc.wait(timeout=PATIENCE)
    _wait(gateway.stopped, "every process's end")
    assert code == 0  # a graceful stop


def test_children_stop_when_the_first_process_is_killed(start: Callable[..., Gateway]) -> None:
    gateway = start()
    os.kill(gateway.proc.pid, signal.SIGKILL)
    gateway.proc.wait(timeout=PATIENCE)
    _wait(gateway.stopped, "the children's end")


@pytest.mark.server
def test_every_process_sends_what_it_counted_when_it_stops(
    start: Callable[..., Gateway], redis_url: str
) -> None:
    """Webhooks refused while the store is unusable (its tables not made: 503), spread by the
    kernel over the processes; a child leaves with os._exit, which runs no atexit."""
    gateway = start(CLI_FLUSHING_AT_EXIT, redis_url)
    sent = 60
    for _ in range(sent):  # a connection each, so that any process may take it
        answer = requests.post(
            f"http://127.0.0.1:{gateway.port}/webhooks/sandbox/no-such-connection",
            data=b"{}",
            headers={"Connection": "close"},
            timeout=PATIENCE,
        )
        assert answer.status_code == 503
    os.kill(gateway.proc.pid, signal.SIGTERM)
    gateway.proc.wait(timeout=PATIENCE)
    _wait(gateway.stopped, "every process's end")
    client = redis.Redis.from_url(redis_url)
    try:
        counted = sum(
            value
            for labels, value in metrics.read(client)["webhooks"]
            if labels["outcome"] == "unavailable"
        )
    finally:
        client.close()
    assert counted == sent


def test_a_child_killed_stops_the_gateway_with_an_error(
    start: Callable[..., Gateway], tmp_path: Path
) -> None:
    """Killed outright (out of memory, say): the gateway does not serve on with fewer processes
    unnoticed, it stops whole and says why, so that whatever runs it starts it again."""
    gateway = start()
    child = next(pid for pid in gateway.pids if pid != gateway.proc.pid)
    os.kill(child, signal.SIGKILL)
    code = gateway.proc.wait(timeout=PATIENCE)
    _wait(gateway.stopped, "every process's end")
    assert code == 1
    assert f"gateway process {child} ended on its own" in (tmp_path / "gateway.log").read_text()


def test_a_stop_of_the_whole_process_group_is_a_clean_stop(
    start: Callable[..., Gateway],
) -> None:
    """SIGTERM to every process at once (a terminal's Ctrl-C, systemd's control group): each
    child stops cleanly, which is no failure of the gateway."""
    gateway = start()
    os.killpg(gateway.proc.pid, signal.SIGTERM)
    code = gateway.proc.wait(timeout=PATIENCE)
    _wait(gateway.stopped, "every process's end")
    assert code == 0
