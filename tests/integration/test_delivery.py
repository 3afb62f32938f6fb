"""Tasks sent by name reach real workers, and survive workers killed mid-task.

Every test runs in each mode: embedded (the fleet's own Redis and SQLite), server mode with a
Redis broker, and server mode with a RabbitMQ broker (both on PostgreSQL).
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from spark_integrations import settings
from spark_integrations.constants import QUEUE_MAINTENANCE, TASK_PING
from spark_integrations.store import DeadLetter, session_scope
from tests.integration.fleet import (
    FleetProcess,
    client_app,
    redis_list,
    send_probe,
    wait_for,
    worker,
)
from tests.integration.probe_tasks import finished_key, started_key


def coordination(env: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(settings.load(env).redis_url, decode_responses=True)


def ready_worker(env: dict[str, str], log: Path, processes: list[FleetProcess]) -> FleetProcess:
    """Start a worker, register it for clean-up, and wait until it consumes."""
    w = worker(env, log)
    processes.append(w.start().wait_ready())
    return w


def test_task_sent_by_name_comes_back(
    fleet_env: dict[str, str], short_tmp: Path, processes: list[FleetProcess]
) -> None:
    w = ready_worker(fleet_env, short_tmp / "worker.log", processes)
    app = client_app(fleet_env)
    result = app.send_task(TASK_PING, kwargs={"echo": "hello"}, queue=QUEUE_MAINTENANCE)
    answer = result.get(timeout=30)
    assert answer["ok"] is True
    assert answer["echo"] == "hello"
    assert answer["worker"].startswith("fleet-")
    assert answer["pid"] in w.children()


def test_pool_child_killed_mid_task_runs_again_at_once(
    fleet_env: dict[str, str], short_tmp: Path, processes: list[FleetProcess]
) -> None:
    ready_worker(fleet_env, short_tmp / "worker.log", processes)
    rc = coordination(fleet_env)
    marker = uuid.uuid4().hex
    result = send_probe(client_app(fleet_env), marker=marker, first_sleep=120)
    first = wait_for(lambda: redis_list(rc, started_key(marker)), 30, "the first delivery")
    os.kill(first[0]["pid"], signal.SIGKILL)
    # Far sooner than a dead worker's messages come back (the reclaim time on Redis, 60 s by
    # default): the pool reports the lost child and the message is handed out again at once.
    answer = result.get(timeout=60)
    assert answer["deliveries"] == 2
    starts = redis_list(rc, started_key(marker))
    assert len(starts) == 2 and starts[0]["pid"] != starts[1]["pid"]
    assert len(redis_list(rc, finished_key(marker))) == 1


@pytest.mark.slow
def test_main_process_killed_mid_task_runs_on_another_worker(
    fleet_env: dict[str, str], short_tmp: Path, processes: list[FleetProcess]
) -> None:
    env = {**fleet_env, "SPARK_INTEGRATIONS_RECLAIM_AFTER": "4"}
    a = ready_worker(env, short_tmp / "worker-a.log", processes)
    rc = coordination(env)
    marker = uuid.uuid4().hex
    result = send_probe(client_app(env), marker=marker, first_sleep=6)
    wait_for(lambda: redis_list(rc, started_key(marker)), 30, "the first delivery")
    a.kill_main()
    b = ready_worker(env, short_tmp / "worker-b.log", processes)
    # On Redis the message comes back once the dead worker's alive key has expired (the reclaim
    # time, 4 s here) and a living worker reclaims it; on RabbitMQ as soon as the dead worker's
    # connection closes.
    answer = result.get(timeout=90)
    starts = redis_list(rc, started_key(marker))
    assert answer["deliveries"] == 2
    assert len(starts) == 2
    assert starts[0]["worker"] != starts[1]["worker"]
    assert starts[1]["pid"] in b.children()
    assert len(redis_list(rc, finished_key(marker))) == 1


def test_poison_message_ends_in_dead_letters(
    fleet_env: dict[str, str], short_tmp: Path, processes: list[FleetProcess]
) -> None:
    env = {**fleet_env, "SPARK_INTEGRATIONS_MAX_DELIVERIES": "2"}
    ready_worker(env, short_tmp / "worker.log", processes)
    rc = coordination(env)
    marker = uuid.uuid4().hex
    result = send_probe(client_app(env), marker=marker, always_kill_self=True)
    result.get(timeout=90, propagate=False)
    assert result.state == "FAILURE"
    assert "dead-lettered" in str(result.result)
    # Two deliveries ran the task (each killed its process); the third was refused.
    assert len(redis_list(rc, started_key(marker))) == 2
    assert redis_list(rc, finished_key(marker)) == []
    with session_scope(settings.load(env).database_url) as session:
        letters = session.scalars(select(DeadLetter).where(DeadLetter.task_id == result.id)).all()
    assert len(letters) == 1
    assert letters[0].task == "tests.probe"
    assert letters[0].attempts == 2
    assert letters[0].kwargs["marker"] == marker
