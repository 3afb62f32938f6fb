"""workers.embedded._alive: a running process is alive; an exited one, reaped or not, is not."""

from __future__ import annotations

import os
import subprocess
import sys

from spark_integrations.workers.embedded import _alive


def test_a_zombie_is_not_alive_and_a_running_process_is() -> None:
    running = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert _alive(running.pid)
        # Not waited for: the child stays a zombie until reaped.
        os.waitid(os.P_PID, exited.pid, os.WEXITED | os.WNOWAIT)
        with open(f"/proc/{exited.pid}/stat") as stat:
            assert stat.read().rpartition(")")[2].split()[0] == "Z"
        assert not _alive(exited.pid)
    finally:
        assert running.stdin is not None
        running.stdin.close()
        running.wait(timeout=30)
        exited.wait(timeout=30)
    assert not _alive(exited.pid)
