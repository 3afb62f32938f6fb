"""The store's tables as typed SQLAlchemy 2.0 models.

Secrets are never held here in plaintext: ``Connection.credentials`` and the token columns of
``OAuthToken`` hold Fernet tokens (see :mod:`store.crypto`); the repositories encrypt and decrypt.
"""

from __future__ import annotations

import uuid
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
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from spark_integrations.constants import CONNECTION_STATUSES
from spark_integrations.store.types import UTCDateTime, utcnow

__all__ = [
    "Base",
    "Connection",
    "DeadLetter",
    "Exposure",
    "OAuthFlow",
    "OAuthToken",
    "OutboundDelivery",
    "OutboundEvent",
    "ParkedCall",
    "Record",
    "SparkKey",
    "Subscriber",
    "SyncCursor",
    "SyncDefinition",
    "SyncRun",
    "SyncRunPosition",
    "WebhookEvent",
    "WebhookRoute",
    "models_webhooks",
    "new_id",
]

# Named constraints, so migrations can alter them on every backend (SQLite batch mode included).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A new random identifier for a row."""
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    """Declarative base of every model of the store."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Connection(Base):
    """One account at one provider: its config, encrypted credentials and status."""

    __tablename__ = "connections"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(map(repr, CONNECTION_STATUSES))})", name="status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fernet token of a JSON object {secret_key: value}; None when the connection holds none.
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    token: Mapped[OAuthToken | None] = relationship(
        back_populates="connection", cascade="all, delete-orphan", passive_deletes=True
    )
    syncs: Mapped[list[SyncDefinition]] = relationship(
        back_populates="connection", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Connection(id={self.id!r}, provider={self.provider!r}, status={self.status!r})"


class OAuthToken(Base):
    """The OAuth 2.0 tokens of one connection; ``version`` fences concurrent refreshes.

    ``refresh_pending_since`` and ``refresh_pending_by`` are the refresh journal: written and
    committed just before a refresh request leaves, cleared in the same write that stores the
    provider's answer. A journal left behind by a refresher that died means the provider may
    have rotated the refresh token and the answer was lost (see :mod:`tasks.tokens`).
    """

    __tablename__ = "oauth_tokens"
    __table_args__ = (
        CheckConstraint("grant_type IN ('authorization_code', 'client_credentials')", name="grant"),
    )

    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    access_token: Mapped[bytes] = mapped_column(LargeBinary)
    refresh_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_type: Mapped[str] = mapped_column(String(40), default="Bearer")
    expires_at: Mapped[datetime | None]
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Incremented on every write; a writer states the version it read (UPDATE ... WHERE version
    # = :seen), so a refresher whose lock expired cannot overwrite a newer token.
    version: Mapped[int] = mapped_column(Integer, default=1)
    obtained_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # How the token was obtained: the connect flow, or the client-credentials grant (re-issued).
    grant_type: Mapped[str] = mapped_column(String(40), default="authorization_code")
    refresh_pending_since: Mapped[datetime | None]
    refresh_pending_by: Mapped[str | None] = mapped_column(String(100))

    connection: Mapped[Connection] = relationship(back_populates="token")

    def __repr__(self) -> str:
        return f"OAuthToken(connection_id={self.connection_id!r}, version={self.version!r})"


class OAuthFlow(Base):
    """One run of the connect flow: the signed link, then its single-use ``state``.

    ``connect`` creates the row and prints a link signed over its id; the gateway's authorize
    endpoint accepts the link once (``issued`` → ``authorizing``), keeps the PKCE verifier
    (encrypted) and the hash of a fresh ``state``, and redirects to the provider; the callback
    claims the state once and ends the flow ``succeeded`` or ``failed`` with the provider's error,
    which ``connect`` reports.
    """

    __tablename__ = "oauth_flows"
    __table_args__ = (
        CheckConstraint(
            "status IN ('issued', 'authorizing', 'succeeded', 'failed')", name="status"
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="issued")
    link_expires_at: Mapped[datetime]
    state_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    state_expires_at: Mapped[datetime | None]
    # Fernet token of the PKCE code verifier.
    code_verifier: Mapped[bytes | None] = mapped_column(LargeBinary)
    redirect_uri: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]


class SyncDefinition(Base):
    """A stream of a connection pulled on a schedule into a destination."""

    __tablename__ = "sync_definitions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    stream: Mapped[str] = mapped_column(String(200))
    # "every:SECONDS" or "cron:EXPR" (UTC); None for a sync run only on demand.
    schedule: Mapped[str | None] = mapped_column(String(200))
    destination: Mapped[str] = mapped_column(String(300), default="store")
    # The stream's parameters (``syncs add --param NAME=VALUE``), validated when stored and
    # passed to every page of every run.
    params: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # What the destination makes of each record (``syncs add --with NAME=TEMPLATE``): a
    # template of the record's fields per param of the action (or of spark's ``input``).
    destination_params: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # Which records an action or spark destination sends (``syncs add --deliver``): "changes"
    # (each new or changed version) or "new" (only keys the sync never delivered before).
    deliver: Mapped[str] = mapped_column(String(10), default="changes", server_default="changes")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime | None] = mapped_column(index=True)
    # The run in progress (incremental) and the backfill in progress: claimed with
    # compare-and-set, so at most one of each runs at a time across the fleet.
    active_run_id: Mapped[str | None] = mapped_column(String(36))
    backfill_run_id: Mapped[str | None] = mapped_column(String(36))
    # The due time a scheduler last claimed (two schedulers never claim one period twice).
    last_scheduled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    connection: Mapped[Connection] = relationship(back_populates="syncs")
    cursor: Mapped[SyncCursor | None] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    runs: Mapped[list[SyncRun]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class SyncCursor(Base):
    """Where the last committed page of a sync left off."""

    __tablename__ = "sync_cursors"

    sync_id: Mapped[str] = mapped_column(
        ForeignKey("sync_definitions.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[Any | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncRun(Base):
    """One run of one sync: its progress, outcome and timing."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),
        Index("ix_sync_runs_sync_id_created_at", "sync_id", "created_at"),
        Index("ix_sync_runs_task_id", "task_id"),
        Index("ix_sync_runs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    sync_id: Mapped[str] = mapped_column(ForeignKey("sync_definitions.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    full_refresh: Mapped[bool] = mapped_column(Boolean, default=False)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    records: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The task id every part of the run shares (a continuation keeps it), so a caller waiting
    # on it gets the run's result.
    task_id: Mapped[str | None] = mapped_column(String(200))
    # The lease: which execution holds the run, and when it last proved alive. Every page is
    # committed fenced on the holder, so a run taken over cannot be written by its old holder.
    holder: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None]
    # Where the run reads from: the filter fixed at its start and the next page's position.
    since: Mapped[Any | None] = mapped_column(JSON)
    position: Mapped[Any | None] = mapped_column(JSON)
    # The sync's cursor as this run left it.
    cursor: Mapped[Any | None] = mapped_column(JSON)
    # Newest-first and delta streams: the cursor the sync takes when the run finishes (the
    # highest replication value read so far, or the provider's delta cursor), committed with
    # every page; the sync's cursor does not move before.
    pending_cursor: Mapped[Any | None] = mapped_column(JSON)
    # Requests retried, waits for the rate budget, and times the run was resumed after a loss.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deferred: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resumed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Takeovers since the last committed page: a page that kills its worker every time ends
    # the run as failed instead of looping.
    stalls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SyncRunPosition(Base):
    """A next-page position a run of a sync has followed, kept as a digest (SHA-256 of its
    canonical JSON) with the run's page that handed it back first.

    Written in the transaction of that page's commit, so the positions a run followed span its
    whole chain of tasks (hand-offs and takeovers); a page handing back one of them again is a
    pagination cycle. Deleted when the run ends, and with the run.
    """

    __tablename__ = "sync_run_positions"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    page: Mapped[int] = mapped_column(Integer)


class Record(Base):
    """One record of a sync in the record store, keyed by the sync and the record's primary key.

    ``content_hash`` (SHA-256 of the record's canonical JSON) lets an upsert leave unchanged
    records unwritten; ``first_seen_at`` and ``last_changed_at`` say when the record arrived and
    when its content last differed.
    """

    __tablename__ = "records"

    sync_id: Mapped[str] = mapped_column(
        ForeignKey("sync_definitions.id", ondelete="CASCADE"), primary_key=True
    )
    # The primary key's value as canonical JSON text (a string id stays "\"abc\"", 7 stays "7").
    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    data: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """An incoming provider webhook, stored before it is acknowledged; one row per delivery id."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("connection_id", "delivery_id", name="uq_webhook_events_delivery"),
        CheckConstraint(
            "status IN ('received', 'processing', 'processed', 'failed')", name="status"
        ),
        # The sweep's events still to take (migration 0012): the rest of the table is history.
        Index(
            "ix_webhook_events_unsent",
            "received_at",
            postgresql_where=text("status = 'received'"),
            sqlite_where=text("status = 'received'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(100))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    delivery_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    processed_at: Mapped[datetime | None]
    # The provider's event type (``issues.opened``, ``payment_intent.succeeded``), if it has one.
    event_type: Mapped[str | None] = mapped_column(String(200))
    # Times processing was tried, and when a task was last sent for it (None: never, so the
    # sweeper sends one once the broker answers).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    enqueued_at: Mapped[datetime | None] = mapped_column(index=True)
    # What processing did (routes run, task ids), for `webhooks list` and the console.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class DeadLetter(Base):
    """A task the fleet gave up on, with its cause, kept for inspection and replay.

    ``kwargs`` is the copy for display: the task's keyword arguments with anything under a
    secret-looking name masked and whatever the store cannot hold written out as text.
    ``replay_kwargs`` is the copy for replay: a Fernet token of exactly what was sent (JSON),
    so a replay sends the same call. There is no foreign key to the connection: the record
    outlives it.
    """

    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    task: Mapped[str] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(200))
    connection_id: Mapped[str | None] = mapped_column(String(36), index=True)
    action: Mapped[str | None] = mapped_column(String(200))
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fernet token of the kwargs exactly as sent (JSON); None for letters older than 0007.
    replay_kwargs: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    replayed_at: Mapped[datetime | None]


class ParkedCall(Base):
    """A task waiting longer than a broker countdown may safely last.

    On Redis a message whose countdown outlives the visibility timeout is handed out again and
    again, so a task told to wait that long (a provider's long ``Retry-After``) is kept here
    instead, and a beat job sends it again, under the same task id, once it is due.
    """

    __tablename__ = "parked_calls"

    task_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(200))
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    due_at: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SparkKey(Base):
    """A key automagik-spark presents (``x-api-key``) to the gateway's ``/spark`` surface.

    Only its SHA-256 is kept: the key is 32 random bytes, printed once by ``expose key``, so a
    plain digest cannot be reversed or guessed. ``expose key`` replaces the key (rotation).
    """

    __tablename__ = "spark_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Exposure(Base):
    """An action or a sync that spark sees as a flow through ``/spark`` (nothing by default).

    ``kind`` is ``action`` (``connection_id``, ``action``, fixed ``params``) or ``sync``
    (``sync_id``); it goes with its connection or sync.
    """

    __tablename__ = "exposures"
    __table_args__ = (CheckConstraint("kind IN ('action', 'sync')", name="kind"),)

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    connection_id: Mapped[str | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    action: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    sync_id: Mapped[str | None] = mapped_column(
        ForeignKey("sync_definitions.id", ondelete="CASCADE")
    )
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The tables of webhooks in and out live in a module of their own; importing it here puts them
# in ``Base.metadata`` for Alembic and for every reader of this module.
from spark_integrations.store import models_webhooks  # noqa: E402
from spark_integrations.store.models_webhooks import (  # noqa: E402
    OutboundDelivery,
    OutboundEvent,
    Subscriber,
    WebhookRoute,
)
