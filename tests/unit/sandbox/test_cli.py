"""Command lines: ``spark-integrations sandbox`` and ``python -m spark_integrations.sandbox``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from spark_integrations.sandbox import SandboxOptions
from spark_integrations.workers.commands_sandbox import sandbox_command

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec_c2VjcmV0LWtleQ=="

BAD = [
    (["--rate-limit", "-1"], "--rate-limit"),
    (["--burst", "0"], "--burst"),
    (["--fault-rate", "1.5"], "--fault-rate"),
    (["--fault-rate", "nan"], "--fault-rate"),
    (["--fault-kinds", "500,boom"], "--fault-kinds"),
    (["--token-ttl", "0"], "--token-ttl"),
    (["--records", "-5"], "--records"),
    (["--churn", "-2"], "--churn"),
    (["--port", "70000"], "--port"),
    (["--port", "abc"], "--port"),
    (["--slow-seconds", "-1"], "--slow-seconds"),
    (["--webhook-url", "http://127.0.0.1:1/h"], "--webhook-secret"),
    (["--webhook-secret", SECRET], "--webhook-url"),
    (["--webhook-url", "ftp://x", "--webhook-secret", SECRET], "--webhook-url"),
    (["--webhook-url", "http://h/x", "--webhook-secret", "secret"], "--webhook-secret"),
    (["--webhook-url", "http://h/x", "--webhook-secret", "whsec_%%%"], "--webhook-secret"),
    (["--client-id", ""], "--client-id"),
    (["--api-key", ""], "--api-key"),
]


@pytest.mark.parametrize(("args", "flag"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_click_command_refuses_bad_values_in_one_sentence(args: list[str], flag: str) -> None:
    result = CliRunner().invoke(sandbox_command, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and flag in error_lines[0]
    assert error_lines[0].rstrip().endswith(".")


def test_options_refuse_bad_values_with_value_error() -> None:
    with pytest.raises(ValueError, match="--fault-rate"):
        SandboxOptions(fault_rate=-0.1)
    with pytest.raises(ValueError, match="both or neither"):
        SandboxOptions(webhook_url="http://h/x")
    assert SandboxOptions(webhook_url="http://h/x", webhook_secret=SECRET).webhook_secret


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_module_refuses_bad_values_with_exit_2() -> None:
    result = run([sys.executable, "-m", "spark_integrations.sandbox", "--fault-rate", "2"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--fault-rate must be a finite number between 0 and 1" in result.stderr


def test_port_in_use_exits_1_in_one_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run([sys.executable, "-m", "spark_integrations.sandbox", "--port", port])
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("sandbox: cannot listen on 127.0.0.1:" + port)
        code = "from workers.commands_sandbox import sandbox_command; sandbox_command()"
        result = run([sys.executable, "-c", code, "--port", port])
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "cannot listen on" in result.stderr


CLICK_MAIN = "from workers.commands_sandbox import sandbox_command; sandbox_command()"


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        ([sys.executable, "-m", "spark_integrations.sandbox"], signal.SIGTERM),
        ([sys.executable, "-c", CLICK_MAIN], signal.SIGTERM),
        ([sys.executable, "-m", "spark_integrations.sandbox"], signal.SIGINT),
    ],
    ids=["module-sigterm", "click-sigterm", "module-sigint"],
)
def test_serves_then_exits_0_on_signal(command: list[str], sig: signal.Signals) -> None:
    args = [*command, "--port", "0", "--records", "10", "--api-key", "k"]
    env = {**os.environ, "PYTHONUNBUFFERED": "0"}
    with subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert line.startswith("sandbox listening on http://127.0.0.1:")
            url = line.split()[-1]
            assert int(url.rsplit(":", 1)[1]) > 0
            with requests.Session() as session:
                session.trust_env = False
                with session.get(url + "/v1/items/item-000001", headers={"X-API-Key": "k"}) as a:
                    assert a.status_code == 200
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == 0
            assert proc.stdout.read() == "" and proc.stderr.read() == ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
