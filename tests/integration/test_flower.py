"""Flower runs against the fleet's broker, and demands authentication when configured."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from tests.integration.fleet import (
    FleetProcess,
    base_env,
    server_env,
    stop_embedded_redis,
    wait_for,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str, auth: tuple[str, str] | None = None) -> int:
    try:
        return requests.get(url, auth=auth, timeout=5).status_code
    except requests.ConnectionError:
        return 0


def test_flower_serves_the_embedded_fleet(short_tmp: Path, processes: list[FleetProcess]) -> None:
    env = base_env(short_tmp / "home")
    port = free_port()
    try:
        processes.append(
            FleetProcess(env, ["flower", "--port", str(port)], short_tmp / "flower.log").start()
        )
        url = f"http://127.0.0.1:{port}/"
        assert wait_for(lambda: status(url) == 200, 60, "Flower to answer")
    finally:
        for proc in processes:
            proc.kill()
        stop_embedded_redis(env)


@pytest.mark.server
def test_flower_requires_its_password_in_server_mode(
    short_tmp: Path, redis_url: str, postgres_url: str, processes: list[FleetProcess]
) -> None:
    env = server_env(
        short_tmp / "home",
        broker=redis_url,
        redis_url=redis_url,
        database_url=postgres_url,
        SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH="ops:correct-horse",
    )
    port = free_port()
    processes.append(
        FleetProcess(env, ["flower", "--port", str(port)], short_tmp / "flower.log").start()
    )
    url = f"http://127.0.0.1:{port}/"
    assert wait_for(lambda: status(url) == 401, 60, "Flower to refuse an anonymous request")
    assert status(url, ("ops", "wrong")) == 401
    assert status(url, ("ops", "correct-horse")) == 200
