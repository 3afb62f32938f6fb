"""sync runs: one at a time per sync, leases, resumable positions, schedule claims

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_definitions") as batch:
        batch.add_column(sa.Column("active_run_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("backfill_run_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("last_scheduled_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("task_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("holder", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("since", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("position", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("cursor", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("deferred", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("resumed", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("stalls", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_sync_runs_task_id", ["task_id"])
        batch.create_index("ix_sync_runs_status", ["status"])


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_index("ix_sync_runs_status")
        batch.drop_index("ix_sync_runs_task_id")
        for name in (
            "stalls",
            "resumed",
            "deferred",
            "retries",
            "cursor",
            "position",
            "since",
            "heartbeat_at",
            "holder",
            "task_id",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("sync_definitions") as batch:
        batch.drop_column("last_scheduled_at")
        batch.drop_column("backfill_run_id")
        batch.drop_column("active_run_id")
