"""Retention: history older than the retention period is deleted, in short batches.

What goes, once older than the cut-off:

* ``sync_runs``: finished runs (``succeeded`` or ``failed``) by ``finished_at``. A run in progress
  is never touched, and the newest run of each sync is kept whatever its age, so ``syncs status``
  always tells how a sync last went.
  The next-page positions a run followed (``sync_run_positions``) need no purge: they are
  deleted when the run ends, and with the run (``ON DELETE CASCADE``).
* ``dead_letters``: by ``created_at``, replayed or not.
* ``webhook_events``: processed or failed events by ``received_at``; an event still to process
  stays. (A provider redelivering an event after that long would have it processed again.)
* ``oauth_flows``: finished flows by ``finished_at`` (``created_at`` when unset); flows never
  used by ``link_expires_at``; flows abandoned at the provider by ``state_expires_at``.
* ``outbound_deliveries``: delivered or failed deliveries of the fleet's events by
  ``created_at`` (a failed one's dead letter stays until its own purge).
* ``outbound_events``: events by ``created_at`` once no delivery of theirs is still pending.

Each batch of at most :data:`BATCH` rows is selected and deleted in a transaction of its own, the
selection's conditions repeated in the ``DELETE``, so the purge never holds a long transaction
nor deletes a row that changed in between (a failed webhook event being processed again, say).

Idempotency records of ``integrations.call`` live in Redis with a TTL (24 hours by default) and
expire by themselves: nothing to purge here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from spark_integrations.store.models import Base, DeadLetter, OAuthFlow, SyncRun, WebhookEvent
from spark_integrations.store.models_webhooks import OutboundDelivery, OutboundEvent

__all__ = ["BATCH", "TABLES", "purge_history"]

#: Rows deleted per statement and transaction.
BATCH = 1000
#: The tables purged, in order (the keys of :func:`purge_history`'s answer).
TABLES = (
    "sync_runs",
    "dead_letters",
    "webhook_events",
    "oauth_flows",
    "outbound_deliveries",
    "outbound_events",
)

SessionFactory = Callable[[], AbstractContextManager[Session]]


def _sync_runs(cutoff: datetime) -> Sequence[ColumnElement[bool]]:
    newer = aliased(SyncRun)
    return (
        SyncRun.status.in_(("succeeded", "failed")),
        SyncRun.finished_at < cutoff,
        exists().where(newer.sync_id == SyncRun.sync_id, newer.created_at > SyncRun.created_at),
    )


def _dead_letters(cutoff: datetime) -> Sequence[ColumnElement[bool]]:
    return (DeadLetter.created_at < cutoff,)


def _webhook_events(cutoff: datetime) -> Sequence[ColumnElement[bool]]:
    return (WebhookEvent.status.in_(("processed", "failed")), WebhookEvent.received_at < cutoff)


def _oauth_flows(cutoff: datetime) -> Sequence[ColumnElement[bool]]:
    return (
        or_(
            and_(
                OAuthFlow.status.in_(("succeeded", "failed")),
                func.coalesce(OAuthFlow.finished_at, OAuthFlow.created_at) < cutoff,
            ),
            and_(OAuthFlow.status == "issued", OAuthFlow.link_expires_at < cutoff),
            and_(
                OAuthFlow.status == "authorizing",
                func.coalesce(OAuthFlow.state_expires_at, OAuthFlow.link_expires_at) < cutoff,
            ),
        ),
    )


def _outbound_deliveries(cutoff: datetime) -> Sequence[ColumnElement[bool]]:
    return (
        OutboundDelivery.status.in_(("delivered", "failed")),
        OutboundDelivery.created_at < cutoff,
    )


def _outbound_events(cutoff: datetime) -> Sequence[ColumnElement[bool]]:
    # An event still owed to someone stays, whatever its age.
    owed = exists().where(
        OutboundDelivery.event_id == OutboundEvent.id, OutboundDelivery.status == "pending"
    )
    return (OutboundEvent.created_at < cutoff, ~owed)


_PURGES: dict[
    str,
    tuple[
        type[Base], InstrumentedAttribute[str], Callable[[datetime], Sequence[ColumnElement[bool]]]
    ],
] = {
    "sync_runs": (SyncRun, SyncRun.id, _sync_runs),
    "dead_letters": (DeadLetter, DeadLetter.id, _dead_letters),
    "webhook_events": (WebhookEvent, WebhookEvent.id, _webhook_events),
    "oauth_flows": (OAuthFlow, OAuthFlow.id, _oauth_flows),
    "outbound_deliveries": (OutboundDelivery, OutboundDelivery.id, _outbound_deliveries),
    "outbound_events": (OutboundEvent, OutboundEvent.id, _outbound_events),
}


def purge_history(
    sessions: SessionFactory,
    older_than: datetime,
    *,
    batch: int = BATCH,
    until: float | None = None,
) -> dict[str, int]:
    """Delete the history older than ``older_than``; returns the rows deleted per table.

    Args:
        sessions: opens a session in one transaction, committed when it closes
            (``lambda: session_scope(url)``, or a task's ``store_session``).
        older_than: the cut-off, timezone-aware.
        batch: rows per statement and transaction.
        until: a :func:`time.monotonic` deadline; no batch starts after it (the rest waits for
            the next purge).
    """
    counts = dict.fromkeys(TABLES, 0)
    for table in TABLES:
        model, key, conditions = _PURGES[table]
        while until is None or time.monotonic() < until:
            where = conditions(older_than)
            with sessions() as session:
                ids = session.scalars(select(key).where(*where).limit(batch)).all()
                if ids:
                    result = session.execute(
                        delete(model)
                        .where(key.in_(ids), *where)
                        .execution_options(synchronize_session=False)
                    )
                    counts[table] += int(result.rowcount)  # type: ignore[attr-defined]
            if len(ids) < batch:
                break
    return counts
