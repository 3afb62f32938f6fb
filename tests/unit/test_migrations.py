"""Migrations: they build exactly the models' schema, go down and up again, and tolerate races."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

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
    "spark_keys",
    "exposures",
    "webhook_routes",
    "subscribers",
    "outbound_events",
    "outbound_deliveries",
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


def test_0010_down_and_up_keeps_the_syncs_which_then_deliver_changes(
    store_url: str, sync_id: str
) -> None:
    """Syncs defined before 0010 keep what they did (each new or changed version); going down
    drops the column in place, with every sync and its records kept."""
    from spark_integrations.store import SyncDefinition, session_scope

    with session_scope(store_url) as session:
        session.get(SyncDefinition, sync_id).deliver = "new"  # type: ignore[union-attr]
    runner.downgrade(store_url, "0009")
    with engine_for(store_url).connect() as conn:
        rows = conn.execute(text("SELECT * FROM sync_definitions"))
        columns = list(rows.keys())
        assert "deliver" not in columns and "destination_params" in columns
        assert len(rows.all()) == 1
    runner.upgrade(store_url)
    with session_scope(store_url) as session:
        assert session.get(SyncDefinition, sync_id).deliver == "changes"  # type: ignore[union-attr]


def test_sqlite_upgrade_creates_missing_parent_folder(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "store.db"
    url = f"sqlite:///{db}"
    try:
        runner.upgrade(url)
        assert db.is_file()
        assert runner.is_at_head(url)
    finally:
        dispose_engines(url)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def migrate_lock(url: str) -> Path:
    """The file an upgrade of the SQLite store at ``url`` locks."""
    database = Path(url.removeprefix("sqlite:///"))
    return database.with_name(database.name + ".migrate.lock")


@contextmanager
def holding_flock(path: Path) -> Iterator[None]:
    """Hold the lock an upgrade takes, so that upgrades started meanwhile all wait on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def flock_waiters(path: Path) -> int:
    """How many threads or processes are blocked on ``path``'s flock now (Linux /proc/locks)."""
    inode = f":{path.stat().st_ino}"
    return sum(
        1
        for line in Path("/proc/locks").read_text().splitlines()
        if "->" in line.split() and "FLOCK" in line and any(f.endswith(inode) for f in line.split())
    )


def test_concurrent_upgrades_in_threads(sqlite_url: str) -> None:
    """Four upgrades wait together on the lock (the race, seen in /proc/locks), then each
    finds its way: the store ends at the newest migration, its schema exact."""
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            runner.upgrade(sqlite_url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    lock = migrate_lock(sqlite_url)
    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    with holding_flock(lock):
        for t in threads:
            t.start()
        wait_until(lambda: flock_waiters(lock) == 4, "four upgrades waiting on the lock")
    for t in threads:
        t.join()
    assert errors == []
    assert runner.is_at_head(sqlite_url)
    assert schema_diff(sqlite_url) == []


_UPGRADE_SCRIPT = textwrap.dedent(
    """
    import sys
    from spark_integrations.migrations import runner
    print(runner.upgrade(sys.argv[1]))
    """
)


def test_concurrent_upgrades_in_processes(tmp_path: Path) -> None:
    """Three processes wait together on the lock (seen in /proc/locks), then all succeed."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    lock = migrate_lock(url)
    with holding_flock(lock):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _UPGRADE_SCRIPT, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            wait_until(lambda: flock_waiters(lock) == 3, "three upgrades waiting on the lock")
        except AssertionError:
            for proc in procs:
                proc.kill()
            raise
    outcomes = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == runner.head_revision()
    try:
        assert runner.is_at_head(url)
        assert schema_diff(url) == []
    finally:
        dispose_engines(url)


def advisory_waiters(url: str) -> int:
    """Sessions of this database waiting for an advisory lock now."""
    with engine_for(url).connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                )
            ).scalar_one()
        )


@pytest.mark.server
def test_concurrent_upgrades_on_postgresql(postgres_url: str) -> None:
    """Two upgrades wait together on the advisory lock (seen in pg_locks), then both succeed."""
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            runner.upgrade(postgres_url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    with engine_for(postgres_url).connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": runner._PG_LOCK_KEY})
        holder.commit()
        for t in threads:
            t.start()
        wait_until(lambda: advisory_waiters(postgres_url) == 2, "two upgrades waiting")
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": runner._PG_LOCK_KEY})
        holder.commit()
    for t in threads:
        t.join()
    assert errors == []
    assert runner.is_at_head(postgres_url)
