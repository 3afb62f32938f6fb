"""Fixtures of the unit tests: migrated stores on SQLite and PostgreSQL, engines disposed after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Each parameter names the fixture giving that backend's URL.
SQLITE_AND_POSTGRES = [
    pytest.param("sqlite_url", id="sqlite"),
    pytest.param("postgres_url", id="postgresql", marks=pytest.mark.server),
]


def dispose_engines(url: str) -> None:
    """Close and forget the engines this process built for ``url``."""
    from spark_integrations.store.engine import dispose_engines as dispose

    dispose(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """URL of a SQLite file that does not exist yet; its engines are closed after the test."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    yield url
    dispose_engines(url)


@pytest.fixture(params=SQLITE_AND_POSTGRES)
def empty_store_url(request: pytest.FixtureRequest) -> str:
    """An empty store (no table yet) on each backend."""
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
def store_url(empty_store_url: str) -> str:
    """A store on each backend, brought to the newest migration."""
    from spark_integrations.migrations import runner

    runner.upgrade(empty_store_url)
    return empty_store_url


@pytest.fixture
def connection_id(store_url: str, fernet_key: str) -> str:
    """An active sandbox connection in the store (no config, no secrets)."""
    from spark_integrations.store import SecretBox, session_scope
    from spark_integrations.store.connections import add_connection

    with session_scope(store_url) as session:
        conn = add_connection(
            session,
            SecretBox([fernet_key]),
            provider="sandbox",
            name="unit",
            config={},
            secrets={},
            status="active",
        )
        return conn.id


@pytest.fixture
def sync_id(store_url: str, connection_id: str) -> str:
    """A sync of that connection's ``items`` stream, run on demand."""
    from spark_integrations.store import SyncDefinition, session_scope

    with session_scope(store_url) as session:
        sync = SyncDefinition(connection_id=connection_id, stream="items")
        session.add(sync)
        session.flush()
        return sync.id


@pytest.fixture
def home(clean_env: Path) -> Iterator[Path]:
    """A private embedded HOME whose SQLite store's engines are let go after the test, and whose
    embedded Redis, if a command started it, is stopped."""
    from spark_integrations import metrics
    from spark_integrations.settings import embedded_redis_socket
    from spark_integrations.workers.embedded import EmbeddedRedis

    yield clean_env
    dispose_engines(f"sqlite:///{clean_env / 'store.db'}")
    metrics.configure(None)  # an in-process command pointed them at this HOME's Redis
    EmbeddedRedis(clean_env, embedded_redis_socket(clean_env)).stop()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``spark-integrations ARGS`` in this process: its exit status, stdout and stderr."""
    from spark_integrations.workers.cli import main

    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """The command line in this process, in the embedded HOME: each call's ``Outcome`` (exit
    status, stdout, stderr, ``.json()``). test_cli_syncs.py keeps a HOME-less one of its own."""
    from tests.unit.test_cli_syncs import Outcome

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        return Outcome(*run_cli(capsys, *args))

    return run
