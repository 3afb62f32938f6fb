"""``spark-integrations demo`` end to end in a bare home, as a user runs it.

The demo starts its own sandbox, gateway, worker and beat, so the test only runs the command (on
fewer records than the default, for time) and checks the summary and that nothing it started
is left running: no process with the home in its environment, and the embedded Redis stopped
if the demo started it, left running if it was running before.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from spark_integrations import settings
from spark_integrations.workers.embedded import EmbeddedRedis
from tests.integration.fleet import CLI, base_env, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def embedded(env: dict[str, str]) -> EmbeddedRedis:
    s = settings.load(env)
    return EmbeddedRedis(s.home, s.redis_socket)


def processes_of(home: Path) -> list[str]:
    """Pids and command lines of the processes whose environment names ``home``.

    (The embedded Redis overwrites its environment with its process title: it is checked
    through its socket and pidfile instead.)"""
    marker = f"SPARK_INTEGRATIONS_HOME={home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()!r}")
        except OSError:
            continue  # gone, or not ours to read
    return found


def run_demo(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "demo", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=500,
    )


def test_demo_runs_the_main_job_and_stops_everything_it_started(short_tmp: Path) -> None:
    home = short_tmp / "home"
    env = base_env(home)
    try:
        done = run_demo(env, short_tmp, "--records=2000", "--json")
        assert done.returncode == 0, done.stderr[-4000:]
        assert "Traceback" not in done.stderr
        summary = json.loads(done.stdout)  # one JSON document; progress went to stderr
        assert "records 2,000/2,000" in done.stderr
        assert summary["records"] == 2000
        assert summary["rate_limited"] == 0, "the rate budget must keep every 429 away"
        # One message per call, none lost nor doubled: every record, plus the records the
        # sandbox changed while the demo ran, which later runs sent again.
        assert summary["messages_created"] == summary["calls_sent"] >= 2000
        assert summary["dead_letters"] == 0
        assert summary["faults_injected"] > 0 and summary["retries"] > 0
        assert summary["pages"] >= 2 * 20  # both syncs read the whole stream
        assert summary["deferred"] > 0  # more calls queued than the rate allows at once

        assert processes_of(home) == []
        server = embedded(env)
        assert not server.ping() and server.pid() is None, "the demo started Redis: it stops it"
        assert not (home / "beat.pid").exists()
    finally:
        run_cli(env, "down")


def test_demo_reruns_in_a_used_home_and_leaves_a_redis_it_did_not_start(short_tmp: Path) -> None:
    home = short_tmp / "home"
    env = base_env(home)
    try:
        # Redis already running, and a connection named "demo" from an earlier run.
        taken = run_cli(
            env, "connections", "add", "sandbox", "--name", "demo",
            "--config", '{"base_url": "http://127.0.0.1:9"}', "--secret", "api_key=k",
        )  # fmt: skip
        assert taken.returncode == 0, taken.stderr
        server = embedded(env)
        assert server.ensure_running() is True
        done = run_demo(env, short_tmp, "--records=300")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        assert "--name demo-" in out  # a fresh name: "demo" is taken
        assert "using the embedded Redis" in out
        for label in ("records ", "pages ", "retries ", "deferred ", "429s ", "token refreshes "):
            assert f"\n  {label}" in out, out
        assert "  records         300 in the record store" in out, out
        assert "stopped sandbox, gateway, worker, beat." in out
        assert processes_of(home) == []
        assert server.ping(), "Redis was running before the demo: it stays up"
    finally:
        run_cli(env, "down")
