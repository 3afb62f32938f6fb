"""webhooks in and out: what an incoming event is and how far its processing got; routes of
incoming events to syncs, actions and spark workflows; subscribers of the fleet's own events,
and the events and deliveries owed to them

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("event_type", sa.String(200), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.create_index(batch.f("ix_webhook_events_enqueued_at"), ["enqueued_at"])
    op.create_table(
        "webhook_routes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("sync_id", sa.String(36), nullable=True),
        sa.Column("target_connection_id", sa.String(36), nullable=True),
        sa.Column("action", sa.String(200), nullable=True),
        sa.Column("workflow_id", sa.String(200), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('sync', 'action', 'spark')", name=op.f("ck_webhook_routes_kind")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_webhook_routes_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sync_id"],
            ["sync_definitions.id"],
            name=op.f("fk_webhook_routes_sync_id_sync_definitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_connection_id"],
            ["connections.id"],
            name=op.f("fk_webhook_routes_target_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_routes")),
    )
    op.create_index(op.f("ix_webhook_routes_connection_id"), "webhook_routes", ["connection_id"])
    op.create_table(
        "subscribers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column("spark_connection_id", sa.String(36), nullable=True),
        sa.Column("workflow_id", sa.String(200), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('url', 'spark')", name=op.f("ck_subscribers_kind")),
        sa.ForeignKeyConstraint(
            ["spark_connection_id"],
            ["connections.id"],
            name=op.f("fk_subscribers_spark_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
    )
    op.create_table(
        "outbound_events",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_events")),
    )
    op.create_index(op.f("ix_outbound_events_created_at"), "outbound_events", ["created_at"])
    op.create_table(
        "outbound_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subscriber_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_outbound_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_outbound_deliveries_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbound_events.id"],
            name=op.f("fk_outbound_deliveries_event_id_outbound_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_deliveries")),
        sa.UniqueConstraint("subscriber_id", "event_id", name="uq_outbound_deliveries_pair"),
    )
    op.create_index(
        op.f("ix_outbound_deliveries_subscriber_id"), "outbound_deliveries", ["subscriber_id"]
    )
    op.create_index(
        op.f("ix_outbound_deliveries_next_attempt_at"), "outbound_deliveries", ["next_attempt_at"]
    )


def downgrade() -> None:
    # As in 0008: drop columns in place, never a batch rebuild that would cascade-delete.
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"going below 0011 on SQLite needs SQLite 3.35 or later (this is "
            f"{sqlite3.sqlite_version}): its tables would be rebuilt, deleting every event."
        )
    op.drop_table("outbound_deliveries")
    op.drop_table("outbound_events")
    op.drop_table("subscribers")
    op.drop_table("webhook_routes")
    op.drop_index(op.f("ix_webhook_events_enqueued_at"), table_name="webhook_events")
    for column in ("result", "enqueued_at", "attempts", "event_type"):
        op.drop_column("webhook_events", column)
