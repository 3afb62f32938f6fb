"""Helpers of the end-to-end provider tests (test_provider_*.py): a provider's emulator, the
fleet's workers and a client, a connection and its syncs, calls sent as spark sends them.

Built on :mod:`tests.integration.fleet`; each test file keeps only what is its provider's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery
from sqlalchemy import select

from spark_integrations.store import Record, session_scope
from tests.emulators.common import Emulator
from tests.integration.fleet import (
    FleetProcess,
    client_app,
    outcome,
    run_cli,
    send_call,
    start_workers,
)

E = TypeVar("E", bound=Emulator)


def start_emulator(emulator: E, processes: list[Any]) -> E:
    """Start ``emulator`` and have it stopped after the test."""
    started = emulator.start()
    processes.append(started)
    return started


def start_fleet(
    env: dict[str, str], tmp: Path, processes: list[Any], *, concurrency: int
) -> tuple[list[FleetProcess], Celery]:
    """One worker (ready) with ``concurrency`` and a client app as spark builds one."""
    workers = start_workers(env, tmp, processes, concurrency=concurrency)
    return workers, client_app(env)


def add_sync(
    env: dict[str, str], connection_id: str, stream: str, params: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``syncs add CONNECTION STREAM --param K=V ...`` through the command line; its answer."""
    args = ["syncs", "add", connection_id, stream]
    for name, value in (params or {}).items():
        args += ["--param", f"{name}={value}"]
    done = run_cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def stored_values(env: dict[str, str], sync_id: str, field: str) -> list[str]:
    """The ``field`` of every record the sync stored, as text, in no particular order."""
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        rows = session.execute(select(Record.data).where(Record.sync_id == sync_id)).all()
    return [str(data[field]) for (data,) in rows]


def call(
    app: Celery, cid: str, action: str, params: Mapping[str, Any], key: str | None = None
) -> tuple[bool, Any]:
    """Send ``integrations.call`` with an idempotency key (a new one unless given); its outcome."""
    result = send_call(app, cid, action, params, key=key or uuid.uuid4().hex)
    return outcome(result, timeout=120)


def gap(emulator: Emulator, route: str) -> float:
    """Seconds between the last two requests of ``route``."""
    times = [r["at"] for r in emulator.recorded(route)]
    return float(times[-1] - times[-2])


def logged(workers: Iterable[FleetProcess], *secrets: str) -> list[str]:
    """The ``secrets`` that appear in a worker's log (none, when nothing leaked)."""
    logs = [w.output() for w in workers]
    return [secret for secret in secrets for log in logs if secret in log]
