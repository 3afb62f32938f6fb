"""syncs keep their stream's parameters; runs of newest-first and delta streams keep the cursor
they will hand the sync when they finish

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

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
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("pending_cursor")
    with op.batch_alter_table("sync_definitions") as batch:
        batch.drop_column("params")
