"""``gateway --workers N``: stopping the first process stops them all; none outlives it.

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
from pathlib import Path

import pytest

PROCESSES = 3
#: Generous: how long processes may take to start or to stop on a busy machine (a wait, not
#: an assertion on time).
PATIENCE = 60.0
STARTED = re.compile(r"Started server process \[(\d+)\]")
CLI = "from spark_integrations.workers.cli import main; main()"


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


@pytest.fixture
def gateway(
    clean_env: Path, tmp_path: Path, fernet_key: str
) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """A gateway of :data:`PROCESSES` processes: the first one's Popen and every process's id."""
    env = {
        **os.environ,
        "SPARK_INTEGRATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "SPARK_INTEGRATIONS_BROKER_URL": "redis://127.0.0.1:1/0",
        "SPARK_INTEGRATIONS_REDIS_URL": "redis://127.0.0.1:1/0",
        "SPARK_INTEGRATIONS_SECRET_KEYS": fernet_key,
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "gateway", "--port", "0", "--workers", str(PROCESSES)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        pids: list[int] = []

        def started() -> bool:
            pids[:] = [int(p) for p in STARTED.findall(log.read_text(errors="replace"))]
            return len(pids) == PROCESSES or proc.poll() is not None

        _wait(started, "the gateway's start")
        assert len(pids) == PROCESSES and proc.pid in pids, log.read_text()
        yield proc, pids
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_sigterm_to_the_first_process_stops_every_process(
    gateway: tuple[subprocess.Popen[bytes], list[int]],
) -> None:
    """uvicorn raises the SIGTERM it caught again after its shutdown: with the default handler
    the first process died there, before stopping its children, which went on serving."""
    proc, pids = gateway
    os.kill(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout=PATIENCE)
    _wait(lambda: not any(_alive(pid) for pid in pids), "every process's end")
    assert code == 0  # a graceful stop, atexit's last metrics sent


def test_children_stop_when_the_first_process_is_killed(
    gateway: tuple[subprocess.Popen[bytes], list[int]],
) -> None:
    proc, pids = gateway
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=PATIENCE)
    _wait(lambda: not any(_alive(pid) for pid in pids), "the children's end")
