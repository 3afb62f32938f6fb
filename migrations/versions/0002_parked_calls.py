"""parked calls

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parked_calls",
        sa.Column("task_id", sa.String(length=200), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_parked_calls")),
    )
    with op.batch_alter_table("parked_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_parked_calls_due_at"), ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("parked_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parked_calls_due_at"))
    op.drop_table("parked_calls")
