"""Migrations: they build exactly the models' schema, go down and up again, and tolerate races."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from spark_integrations.migrations import runner
from spark_integrations.store.engine import engine_for
from spark_integrations.store.models import Base
from tests.unit.conftest import dispose_engines

TABLES = {
    "parked_calls",
    "oauth_flows",
    "records",
    "connections",
    "oauth_tokens",
    "sync_definitions",
    "sync_runs",
    "sync_run_positions",
    "sync_cursors",
    "webhook_events",
    "dead_letters",
}


def table_names(url: str) -> set[str]:
    return set(inspect(engine_for(url)).get_table_names())


def schema_diff(url: str) -> list[object]:
    with engine_for(url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_models_declare_every_table() -> None:
    assert set(Base.metadata.tables) == TABLES


def test_upgrade_matches_models(empty_store_url: str) -> None:
    assert runner.upgrade(empty_store_url) == runner.head_revision()
    assert table_names(empty_store_url) == TABLES | {"alembic_version"}
    assert schema_diff(empty_store_url) == []


def test_is_at_head(empty_store_url: str) -> None:
    assert runner.current_revision(empty_store_url) is None
    assert not runner.is_at_head(empty_store_url)
    runner.upgrade(empty_store_url)
    assert runner.current_revision(empty_store_url) == runner.head_revision()
    assert runner.is_at_head(empty_store_url)


def test_upgrade_twice_is_a_no_op(empty_store_url: str) -> None:
    runner.upgrade(empty_store_url)
    assert runner.upgrade(empty_store_url) == runner.head_revision()
    assert schema_diff(empty_store_url) == []


def test_downgrade_to_base_then_upgrade_again(empty_store_url: str) -> None:
    runner.upgrade(empty_store_url)
    runner.downgrade(empty_store_url, "base")
    assert table_names(empty_store_url) == {"alembic_version"}
    assert runner.current_revision(empty_store_url) is None
    assert not runner.is_at_head(empty_store_url)

    assert runner.upgrade(empty_store_url) == runner.head_revision()
    assert table_names(empty_store_url) == TABLES | {"alembic_version"}
    assert schema_diff(empty_store_url) == []
    assert runner.is_at_head(empty_store_url)


def test_sqlite_upgrade_creates_missing_parent_folder(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "store.db"
    url = f"sqlite:///{db}"
    try:
        runner.upgrade(url)
        assert db.is_file()
        assert runner.is_at_head(url)
    finally:
        dispose_engines(url)


def test_concurrent_upgrades_in_threads(sqlite_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def upgrade() -> None:
        barrier.wait()
        try:
            runner.upgrade(sqlite_url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert runner.is_at_head(sqlite_url)
    assert schema_diff(sqlite_url) == []


_UPGRADE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from spark_integrations.migrations import runner
    url, start_at = sys.argv[1], float(sys.argv[2])
    while time.time() < start_at:  # line both processes up on the same instant
        time.sleep(0.001)
    print(runner.upgrade(url))
    """
)


def test_concurrent_upgrades_in_processes(tmp_path: Path) -> None:
    import time

    url = f"sqlite:///{tmp_path / 'store.db'}"
    start_at = f"{time.time() + 1.5:.3f}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADE_SCRIPT, url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == runner.head_revision()
    try:
        assert runner.is_at_head(url)
        assert schema_diff(url) == []
    finally:
        dispose_engines(url)


@pytest.mark.server
def test_concurrent_upgrades_on_postgresql(postgres_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def upgrade() -> None:
        barrier.wait()
        try:
            runner.upgrade(postgres_url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert runner.is_at_head(postgres_url)
