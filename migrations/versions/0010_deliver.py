"""a sync's delivery mode: every new or changed record version ('changes'), or only records it
never delivered before ('new')

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every sync defined before this migration keeps what it did: each new or changed version.
    with op.batch_alter_table("sync_definitions") as batch:
        batch.add_column(
            sa.Column("deliver", sa.String(10), nullable=False, server_default="changes")
        )


def downgrade() -> None:
    # As in 0008: drop the column in place, never a batch rebuild that would cascade-delete.
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"going below 0010 on SQLite needs SQLite 3.35 or later (this is "
            f"{sqlite3.sqlite_version}): its tables would be rebuilt, deleting every sync's data."
        )
    op.drop_column("sync_definitions", "deliver")
