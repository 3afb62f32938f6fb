"""Long-running fleet commands started as children (the demo's sandbox, gateway, worker, beat).

Each child runs the ``spark-integrations`` of this installation in its own process group (so
Ctrl-C reaches the parent alone, which then stops every child) and logs to a file.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spark_integrations.errors import ServiceError

__all__ = ["STOP_TIMEOUT", "Child", "cli_command", "free_port", "stop_all"]

#: Seconds every child may take to stop after SIGTERM before its group is SIGKILLed.
STOP_TIMEOUT = 20.0


def cli_command() -> list[str]:
    """The command line of this installation: children run the demo's own Python."""
    script = Path(sys.executable).with_name("spark-integrations")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from workers.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A long-running command of the demo in its own process group, logging to a file."""

    name: str
    args: list[str]
    ready: str  # a pattern of its log that says it is up
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with open(self.log, "wb") as fh:
            # Its own session: Ctrl-C reaches the demo alone, which then stops every child.
            self.proc = subprocess.Popen(
                [*cli_command(), *self.args],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check(self, when: str = "unexpectedly") -> None:
        """Fail with one sentence if the process has exited."""
        code = None if self.proc is None else self.proc.poll()
        if code is not None:
            lines = self.text().strip().splitlines()
            last = f": {lines[-1].strip()[:200]}" if lines else ""
            raise ServiceError(
                f"the {self.name} exited {when} (status {code}){last}; see {self.log}."
            )

    def wait_ready(self, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while not (found := re.search(self.ready, self.text())):
            self.check("as it started")
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the {self.name} did not start within {timeout:g} s; see {self.log}."
                )
            time.sleep(0.1)
        return found


def stop_all(children: list[Child]) -> None:
    """SIGTERM the children's process groups, wait for them, SIGKILL what is left after a while."""
    procs = [c.proc for c in children if c.proc is not None]
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group (a pool process)
        proc.wait()
