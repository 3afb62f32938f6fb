"""oauth lifecycle: the refresh journal, the grant type, connect flows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "grant_type",
                sa.String(length=40),
                nullable=False,
                server_default="authorization_code",
            )
        )
        batch_op.add_column(
            sa.Column("refresh_pending_since", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("refresh_pending_by", sa.String(length=100), nullable=True))
        batch_op.create_check_constraint(
            "grant", "grant_type IN ('authorization_code', 'client_credentials')"
        )
    op.create_table(
        "oauth_flows",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("link_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=True),
        sa.Column("state_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("code_verifier", sa.LargeBinary(), nullable=True),
        sa.Column("redirect_uri", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('issued', 'authorizing', 'succeeded', 'failed')",
            name=op.f("ck_oauth_flows_status"),
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_oauth_flows_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_flows")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_flows_state_hash")),
    )
    with op.batch_alter_table("oauth_flows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oauth_flows_connection_id"), ["connection_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_oauth_flows_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oauth_flows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_flows_created_at"))
        batch_op.drop_index(batch_op.f("ix_oauth_flows_connection_id"))
    op.drop_table("oauth_flows")
    with op.batch_alter_table("oauth_tokens", schema=None) as batch_op:
        batch_op.drop_constraint("grant", type_="check")
        batch_op.drop_column("refresh_pending_by")
        batch_op.drop_column("refresh_pending_since")
        batch_op.drop_column("grant_type")
