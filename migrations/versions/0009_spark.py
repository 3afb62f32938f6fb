"""spark, both ways: a sync's destination params (templates of a record's fields), the keys
spark presents to the gateway's /spark surface (hashed), and what that surface exposes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_definitions") as batch:
        batch.add_column(
            sa.Column("destination_params", sa.JSON(), nullable=False, server_default="{}")
        )
    op.create_table(
        "spark_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spark_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_spark_keys_key_hash")),
    )
    op.create_table(
        "exposures",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=True),
        sa.Column("action", sa.String(200), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False, server_default="{}"),
        sa.Column("sync_id", sa.String(36), nullable=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('action', 'sync')", name=op.f("ck_exposures_kind")),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_exposures_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sync_id"],
            ["sync_definitions.id"],
            name=op.f("fk_exposures_sync_id_sync_definitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_exposures")),
    )


def downgrade() -> None:
    # As in 0008: drop the column in place, never a batch rebuild that would cascade-delete.
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"going below 0009 on SQLite needs SQLite 3.35 or later (this is "
            f"{sqlite3.sqlite_version}): its tables would be rebuilt, deleting every sync's data."
        )
    op.drop_table("exposures")
    op.drop_table("spark_keys")
    op.drop_column("sync_definitions", "destination_params")
