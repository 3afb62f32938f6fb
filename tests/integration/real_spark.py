"""The real automagik-spark (PyPI 0.3.7), for tests: installed once, started per test session.

Spark lives in a virtual environment of its own (its pins never touch ours), cached outside
the checkout so a clean clone on the same machine installs nothing again (offline after the
first install). Each test process starts its own spark:

* its API (``uvicorn automagik_spark.api.app:app``) on a free loopback port;
* its database on this machine's PostgreSQL, a database of its own, tables created from
  spark's own models (``Base.metadata.create_all``), as spark's ``db init`` would;
* its Celery on a ``redis-server`` of its own on a free port, so it takes none of the Redis
  databases our tests use; spark's worker and beat only when a test asks
  (:meth:`RealSpark.start_scheduling`).

Nothing here imports spark: it is driven through its HTTP API and its own command line, as an
operator would. :func:`agent_workflow` makes what a test runs in spark: an agent of the Agents
source emulator synced into a workflow, and the fleet's spark connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests
from cryptography.fernet import Fernet

from tests.conftest import PG_ADMIN_DSN
from tests.emulators.agents_source import AgentsSourceEmulator
from tests.integration.fleet import add_connection, free_port, wait_for
from tests.integration.providers import start_emulator

__all__ = ["SPARK_VERSION", "AgentWorkflow", "RealSpark", "agent_workflow", "spark_python"]

SPARK_VERSION = "0.3.7"
#: What spark's environment holds: spark at its pinned version, and the two drivers it needs
#: beside it (asyncpg comes with spark; its create_all runs through greenlet; psycopg for
#: its Alembic and sync paths).
SPARK_REQUIREMENTS = [f"automagik-spark=={SPARK_VERSION}", "greenlet", "psycopg[binary]"]


def cache_root() -> Path:
    """Where spark's environment is kept: ``SPARK_INTEGRATIONS_TEST_CACHE``, else the real
    user's ``~/.cache`` (read from the password database: tests run under a private HOME)."""
    chosen = os.environ.get("SPARK_INTEGRATIONS_TEST_CACHE")
    if chosen:
        return Path(chosen)
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "spark-integrations-tests"


def spark_python() -> Path:
    """The python of spark's own environment, installed on first use (one installer at a
    time across test processes; a half-made environment is made again)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"automagik-spark-{SPARK_VERSION}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    with open(root / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             *SPARK_REQUIREMENTS],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if pip.returncode:
            raise RuntimeError(f"installing automagik-spark failed: {pip.stderr[-2000:]}")
        done.write_text(SPARK_VERSION)
    return python


_CREATE_TABLES = """
import asyncio
from sqlalchemy.ext.asyncio import create_async_engine
from automagik_spark.core.database.models import Base

async def main(url):
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()

import sys
asyncio.run(main(sys.argv[1]))
"""


class RealSpark:
    """One running automagik-spark: API, database, Redis; worker and beat on demand."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.python = spark_python()
        self.api_key = "spark-test-" + secrets.token_hex(16)
        self.db_name = f"spark_real_{secrets.token_hex(4)}"
        self.db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db_name}"
        self.redis_port = free_port()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.encryption_key = Fernet.generate_key().decode()
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = self.api_key

    # -- the environment spark reads ----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        redis = f"redis://127.0.0.1:{self.redis_port}/0"
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        return {
            **keep,
            "HOME": str(self.workdir),
            "AUTOMAGIK_SPARK_DATABASE_URL": self.db_url,
            "AUTOMAGIK_SPARK_API_KEY": self.api_key,
            "AUTOMAGIK_SPARK_ENCRYPTION_KEY": self.encryption_key,
            "AUTOMAGIK_SPARK_CELERY_BROKER_URL": redis,
            "AUTOMAGIK_SPARK_CELERY_RESULT_BACKEND": redis,
            "AUTOMAGIK_SPARK_DISABLE_TELEMETRY": "true",
            "AUTOMAGIK_SPARK_WORKER_LOG": str(self.workdir / "worker.log"),
            "AUTOMAGIK_SPARK_REMOTE_URL": self.url,
            "AUTOMAGIK_TIMEZONE": "UTC",
        }

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> RealSpark:
        self.processes["redis"] = self._spawn(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
        )  # fmt: skip
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{self.db_name}"')
        subprocess.run(
            [str(self.python), "-c", _CREATE_TABLES, self.db_url],
            env=self.env, cwd=self.workdir, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.processes["api"] = self._spawn(
            "api",
            [str(self.python), "-m", "uvicorn", "automagik_spark.api.app:app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
        )  # fmt: skip
        what = f"automagik-spark's API on {self.url} (log: {self.log('api')})"
        wait_for(self._healthy, 120, what)
        return self

    def start_scheduling(self) -> None:
        """Spark's own Celery worker and beat (its DatabaseScheduler), for spark's schedules."""
        if "worker" in self.processes:
            return
        celery = [str(self.python), "-m", "celery", "-A", "automagik_spark.core.celery.celery_app"]
        self.processes["worker"] = self._spawn(
            "worker",
            [*celery, "worker", "--loglevel=INFO", "-P", "threads", "--concurrency", "2",
             "--hostname", f"spark-{self.port}@%h", "--without-gossip", "--without-mingle"],
        )  # fmt: skip
        self.processes["beat"] = self._spawn(
            "beat",
            [*celery, "beat", "--loglevel=INFO", "--max-interval", "1",
             "--schedule", str(self.workdir / "celerybeat-schedule")],
        )  # fmt: skip

    def stop(self) -> None:
        for proc in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        self.processes.clear()
        self.session.close()
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as admin,
        ):
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def logs(self) -> str:
        """Everything spark's processes wrote (to look for a secret, say)."""
        return "".join(p.read_text(errors="replace") for p in self.workdir.glob("*.log"))

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log(name), "ab") as out:
            return subprocess.Popen(
                argv, env=self.env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def _healthy(self) -> bool:
        proc = self.processes["api"]
        if proc.poll() is not None:
            raise AssertionError(f"automagik-spark's API exited: {self.log('api').read_text()}")
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    # -- spark's API, as an operator uses it ---------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request to spark's API (``/api/v1`` + path); its JSON, or AssertionError."""
        response = self.session.request(method, f"{self.url}/api/v1{path}", timeout=60, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"spark {method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def tasks(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.api("GET", "/tasks", params={"limit": 100000, **params}))

    def add_source(self, url: str, api_key: str, source_type: str = "automagik-agents") -> Any:
        return self.api(
            "POST", "/sources/", json={"source_type": source_type, "url": url, "api_key": api_key}
        )

    def sync_flow(self, flow_id: str, source_url: str) -> dict[str, Any]:
        """Make a spark workflow of a remote flow (both component params are required by
        spark 0.3.7, whatever their value)."""
        return dict(
            self.api(
                "POST",
                f"/workflows/sync/{flow_id}",
                params={
                    "source_url": source_url,
                    "input_component": "input",
                    "output_component": "output",
                },
            )
        )

    def run_workflow(self, workflow_id: str, text: str) -> dict[str, Any]:
        return dict(self.api("POST", f"/workflows/{workflow_id}/run", json=text))


def start_real_spark() -> RealSpark:
    """A started spark in a fresh folder (the caller stops it)."""
    workdir = Path(tempfile.mkdtemp(prefix="real-spark-"))
    spark = RealSpark(workdir)
    try:
        return spark.start()
    except BaseException:
        spark.stop()
        raise


def wait_for_task(spark: RealSpark, predicate: Any, timeout: float, what: str) -> Any:
    """Poll spark's task list until ``predicate(tasks)`` is truthy."""
    return wait_for(lambda: predicate(spark.tasks()), timeout, what, interval=0.3)


@dataclass(frozen=True)
class AgentWorkflow:
    """A spark workflow made of one agent of an Agents source emulator, and the fleet's spark
    connection that runs it."""

    agents: AgentsSourceEmulator
    agent: str
    workflow_id: str
    connection_id: str

    @property
    def target(self) -> str:
        """``CONNECTION:WORKFLOW``, as ``--spark`` takes it."""
        return f"{self.connection_id}:{self.workflow_id}"


def agent_workflow(
    spark: RealSpark,
    env: dict[str, str],
    processes: list[Any],
    *,
    prefix: str,
    description: str,
    slow_seconds: float,
) -> AgentWorkflow:
    """Start an Agents source emulator (stopped after the test) with one agent named
    ``prefix``-something, add it to spark as a source, sync the agent into a spark workflow,
    and add the fleet's spark connection to this spark (``connections add spark``)."""
    agents = start_emulator(AgentsSourceEmulator(slow_seconds=slow_seconds), processes)
    agent = f"{prefix}-{secrets.token_hex(3)}"
    agents.agents[agent] = description
    spark.add_source(agents.url, agents.api_key)
    workflow_id = str(spark.sync_flow(agent, agents.url)["id"])
    connection_id = add_connection(
        env, "spark", {"base_url": spark.url}, f"api_key={spark.api_key}", provider="spark"
    )
    return AgentWorkflow(agents, agent, workflow_id, connection_id)
