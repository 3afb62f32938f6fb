"""Migration 0008 (a sync's stream parameters, a run's pending cursor) up and down on SQLite and
PostgreSQL with data in the store: nothing but its own columns is lost either way."""

from __future__ import annotations

from sqlalchemy import func, select, text

from spark_integrations.migrations import runner
from spark_integrations.store import Record, SyncCursor, SyncDefinition, SyncRun, session_scope
from spark_integrations.store.engine import engine_for
from spark_integrations.store.models import SyncRunPosition
from spark_integrations.store.types import utcnow


def counts(url: str) -> dict[str, int]:
    with engine_for(url).connect() as conn:
        return {
            table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)
            for table in (
                "sync_definitions",
                "sync_runs",
                "sync_run_positions",
                "sync_cursors",
                "records",
            )
        }


def test_down_to_0007_and_up_again_keeps_every_syncs_runs_cursor_and_records(
    store_url: str, sync_id: str
) -> None:
    with session_scope(store_url) as session:
        session.get(SyncDefinition, sync_id).params = {"tag": "alpha"}  # type: ignore[union-attr]
        run = SyncRun(sync_id=sync_id, status="running", full_refresh=False, pending_cursor="t9")
        session.add(run)
        session.flush()
        session.add(SyncRunPosition(run_id=run.id, digest="d" * 64, page=1))
        session.add(SyncCursor(sync_id=sync_id, value="t5"))
        now = utcnow()
        session.add(
            Record(
                sync_id=sync_id,
                key='"r1"',
                data={"id": "r1"},
                content_hash="h" * 64,
                first_seen_at=now,
                last_changed_at=now,
            )
        )
    before = counts(store_url)
    assert set(before.values()) == {1}

    runner.downgrade(store_url, "0007")
    assert counts(store_url) == before
    with engine_for(store_url).connect() as conn:
        columns = {
            "sync_definitions": conn.execute(text("SELECT * FROM sync_definitions")).keys(),
            "sync_runs": conn.execute(text("SELECT * FROM sync_runs")).keys(),
        }
    assert "params" not in columns["sync_definitions"]
    assert "pending_cursor" not in columns["sync_runs"]

    runner.upgrade(store_url)
    assert counts(store_url) == before
    with session_scope(store_url) as session:
        # Rows stored before 0008 take its defaults: no params, no pending cursor.
        assert session.get(SyncDefinition, sync_id).params == {}  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).where(SyncRun.pending_cursor.is_(None))) == 1
        assert session.get(SyncCursor, sync_id).value == "t5"  # type: ignore[union-attr]
