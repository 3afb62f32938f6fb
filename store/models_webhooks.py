"""The store's tables for webhooks in and out: routes of incoming events, and subscribers with
the events and deliveries sent to them.

Imported by :mod:`store.models`, so ``Base.metadata`` (and Alembic) sees them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from spark_integrations.store.models import Base, new_id
from spark_integrations.store.types import utcnow

__all__ = ["OutboundDelivery", "OutboundEvent", "Subscriber", "WebhookRoute"]

#: What a route does with a matching event: run a sync, call an action, run a spark workflow.
ROUTE_KINDS = ("sync", "action", "spark")
#: Where a subscriber's events go: a URL (signed per Standard Webhooks), or a spark workflow.
SUBSCRIBER_KINDS = ("url", "spark")
DELIVERY_STATUSES = ("pending", "delivered", "failed")


class WebhookRoute(Base):
    """Where a connection's incoming events of a type go.

    ``event_type`` is a pattern (``fnmatch``: ``issues.*``, ``*``). ``kind`` ``sync`` runs
    ``sync_id`` now; ``action`` calls ``target_connection_id``'s ``action`` with ``params``
    (templates over the event); ``spark`` runs the workflow ``workflow_id`` through the spark
    connection ``target_connection_id`` (``params`` may hold an ``input`` template).
    """

    __tablename__ = "webhook_routes"
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(map(repr, ROUTE_KINDS))})", name="kind"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    sync_id: Mapped[str | None] = mapped_column(
        ForeignKey("sync_definitions.id", ondelete="CASCADE")
    )
    target_connection_id: Mapped[str | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    action: Mapped[str | None] = mapped_column(String(200))
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Subscriber(Base):
    """Someone who hears of the fleet's events: sync finished or failed, a connection needing
    re-authorisation, a dead letter written, a webhook received.

    ``events`` lists the event types (patterns) wanted. ``kind`` ``url`` posts each event to
    ``url``, signed per Standard Webhooks with ``secret`` (a Fernet token of the ``whsec_``
    secret); ``kind`` ``spark`` runs ``workflow_id`` through the spark connection
    ``spark_connection_id`` with the event as input.
    """

    __tablename__ = "subscribers"
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(map(repr, SUBSCRIBER_KINDS))})", name="kind"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20), default="url")
    url: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    spark_connection_id: Mapped[str | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboundEvent(Base):
    """One event of the fleet, as its subscribers receive it (``data`` holds ids and counts,
    never a secret)."""

    __tablename__ = "outbound_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class OutboundDelivery(Base):
    """One event owed to one subscriber: tried until delivered, or failed when retries run out
    (then a dead letter). ``next_attempt_at`` is when a sweep sends it again."""

    __tablename__ = "outbound_deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "event_id", name="uq_outbound_deliveries_pair"),
        CheckConstraint(f"status IN ({', '.join(map(repr, DELIVERY_STATUSES))})", name="status"),
        # The sweep's deliveries due (migration 0012): delivered and failed ones are history.
        Index(
            "ix_outbound_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    subscriber_id: Mapped[str] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(ForeignKey("outbound_events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
