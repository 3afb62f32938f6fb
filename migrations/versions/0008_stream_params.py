"""syncs keep their stream's parameters; runs of newest-first and delta streams keep the cursor
they will hand the sync when they finish

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_definitions") as batch:
        batch.add_column(sa.Column("params", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("pending_cursor", sa.JSON(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place, on SQLite too (3.35 and later): a batch rebuild
    # would drop and recreate the tables, and with foreign keys on, dropping sync_definitions
    # deletes every sync's runs, cursor and records through their ON DELETE CASCADE.
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"going below 0008 on SQLite needs SQLite 3.35 or later (this is "
            f"{sqlite3.sqlite_version}): its tables would be rebuilt, deleting every sync's data."
        )
    op.drop_column("sync_runs", "pending_cursor")
    op.drop_column("sync_definitions", "params")
