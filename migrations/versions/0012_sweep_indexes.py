"""partial indexes for the two sweeps: webhook events still to take, event deliveries due

Both sweeps run every few seconds and look only at rows still waiting; without these indexes they
read the whole table, history included.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECEIVED = sa.text("status = 'received'")
_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_webhook_events_unsent",
        "webhook_events",
        ["received_at"],
        postgresql_where=_RECEIVED,
        sqlite_where=_RECEIVED,
    )
    op.create_index(
        "ix_outbound_deliveries_due",
        "outbound_deliveries",
        ["next_attempt_at"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_outbound_deliveries_due", table_name="outbound_deliveries")
    op.drop_index("ix_webhook_events_unsent", table_name="webhook_events")
