"""The client distribution (client/), as spark's code would use it, against a real fleet.

Its wheel is built from the repository and installed into a fresh virtual environment that
holds the client and its dependencies alone (from PyPI the first time, then from a wheelhouse
cached outside the checkout, offline); the README's example, read from client/README.md, runs
there against real workers and the sandbox in server mode. The sync side is driven from this
process (the client imported from its source) against the same kind of fleet.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from spark_integrations_client import (
    IntegrationsClient,
    SyncResult,
    SyncSkipped,
    UnknownConnectionError,
    UnknownSyncError,
)

from tests.integration.fleet import add_connection, start_sandbox, start_workers, wait_for
from tests.integration.providers import add_sync
from tests.integration.real_spark import cache_root

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
API_KEY = "sk-sandbox-" + uuid.uuid4().hex
DISTRIBUTION = "automagik-spark-integrations-client"


def pip(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_wheel(into: Path) -> Path:
    """The client's wheel, built from a copy of client/ (a build leaves files in its source)."""
    source = into / "client-src"
    shutil.copytree(
        CLIENT, source, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
    )
    built = pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(into), str(source))
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = into.glob("automagik_spark_integrations_client-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> Path:
    """``wheel[redis]`` and its dependencies, alone, in a new environment; its python.

    The environment is made without pip (this process's pip installs into it), so it holds
    nothing but what the client needs. Dependencies come from a wheelhouse kept between runs;
    what it lacks is fetched from PyPI once (one test process at a time)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    house = cache_root() / "client-wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    wanted = f"{wheel}[redis]"
    offline = ["--python", str(python), "install", "-q", "--no-index", "--find-links", str(house)]
    with open(cache_root() / "client-wheelhouse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = pip(*offline, wanted)
        if done.returncode != 0:
            fetched = pip("download", "-q", "-d", str(house), wanted, timeout=600)
            assert fetched.returncode == 0, fetched.stderr[-3000:]
            done = pip(*offline, wanted)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return python


def readme_example() -> str:
    """The Python example of client/README.md (its first ```python block), as written."""
    text = (CLIENT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "client/README.md has a Python example"
    return str(blocks[0])


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh environment holding only the client and its dependencies."""
    root = tmp_path_factory.mktemp("client")
    return install(build_wheel(root), root / "venv")


def test_the_fresh_environment_holds_the_client_and_nothing_of_the_fleet(
    client_python: Path,
) -> None:
    listed = pip("--python", str(client_python), "list", "--format=json")
    assert listed.returncode == 0, listed.stderr
    names = {row["name"].lower().replace("_", "-") for row in json.loads(listed.stdout)}
    assert DISTRIBUTION in names and "celery" in names and "redis" in names
    assert "automagik-spark-integrations" not in names
    # Nothing the fleet needs beyond Celery and its Redis transport came along.
    fleet = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    fleet_only = {re.split(r"[\[<>=!~; ]", d)[0].lower() for d in fleet} - {
        "celery",
        "kombu",
        "redis",
        "click",
        "packaging",
    }
    assert names & fleet_only == set(), sorted(names & fleet_only)
    probe = subprocess.run(
        [str(client_python), "-I", "-c", PROBE], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == {"fleet": None, "typed": True}


PROBE = """
import importlib.util, json, pathlib
import spark_integrations_client as c
print(json.dumps({
    "fleet": importlib.util.find_spec("spark_integrations") and "found",
    "typed": (pathlib.Path(c.__file__).parent / "py.typed").is_file(),
}))
"""


@pytest.mark.server
def test_the_readme_example_runs_against_a_real_fleet(
    client_python: Path, redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    box = start_sandbox(redis_env, short_tmp, processes, f"--api-key={API_KEY}")
    cid = add_connection(redis_env, "client-example", {"base_url": box.url}, f"api_key={API_KEY}")
    start_workers(redis_env, short_tmp, processes, concurrency=1)
    example = short_tmp / "example.py"
    example.write_text(readme_example(), encoding="utf-8")
    # Only what the README names: the fleet's broker and backend and the connection id.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SPARK_INTEGRATIONS_BROKER_URL": redis_env["SPARK_INTEGRATIONS_BROKER_URL"],
        "SPARK_INTEGRATIONS_RESULT_BACKEND": redis_env["SPARK_INTEGRATIONS_RESULT_BACKEND"],
        "CONNECTION_ID": cid,
    }
    refusal = "refused: no connection has the id 'no-such-connection'."
    outputs = []
    for _ in range(2):
        ran = subprocess.run(
            [str(client_python), "-I", str(example)],
            capture_output=True,
            text=True,
            cwd=short_tmp,
            env=env,
            timeout=180,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr[-3000:]
        outputs.append(ran.stdout.splitlines())
    # What the README says it prints: the call, then its replay from the stored outcome.
    assert outputs == [
        ["hello from spark 1 False", refusal],
        ["hello from spark 0 True", refusal],
    ]
    assert [m["text"] for m in box.messages()] == ["hello from spark"]
    assert box.stats()["messages_created"] == 1


@pytest.mark.server
def test_syncs_through_the_client_run_skip_and_fail_by_contract(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    box = start_sandbox(redis_env, short_tmp, processes, "--records=30", f"--api-key={API_KEY}")
    cid = add_connection(redis_env, "client-sync", {"base_url": box.url}, f"api_key={API_KEY}")
    sync_id = add_sync(redis_env, cid, "items")["id"]
    start_workers(redis_env, short_tmp, processes, concurrency=2)
    with IntegrationsClient.from_env(redis_env) as client:
        first = client.sync(sync_id, timeout=120)
        assert isinstance(first, SyncResult)
        assert (first.sync_id, first.records, first.extra["full_refresh"]) == (sync_id, 30, False)

        # A full refresh held at the provider is in progress: a second one is answered, not
        # failed (a backfill and an incremental run have a slot each, so it is a backfill).
        box.hold("api")
        held = client.send_sync(sync_id, full_refresh=True)
        wait_for(lambda: box.stats()["held"] >= 1, 60, "the full refresh to reach the sandbox")
        skipped = client.sync(sync_id, full_refresh=True, timeout=120)
        assert isinstance(skipped, SyncSkipped)
        assert skipped.sync_id == sync_id and "in progress" in skipped.reason
        box.release()
        refreshed = held.result(timeout=120)
        assert isinstance(refreshed, SyncResult)
        assert refreshed.extra["full_refresh"] is True and refreshed.run_id == skipped.run_id

        with pytest.raises(UnknownSyncError) as unknown:
            client.sync("no-such-sync", timeout=120)
        assert unknown.value.sync_id == "no-such-sync"
        with pytest.raises(UnknownConnectionError):
            client.call("no-such-connection", "create_message", {"text": "x"}, timeout=120)
