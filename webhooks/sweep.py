"""Handing stored webhook events to the workers: the one send, and the sweep that repeats it.

An event is stored (and answered 2xx) before anything is sent, so a send can fail or never
happen: the broker was down, or the gateway died between its commit and its send. The event is
durable all the same, with ``status`` ``received``; ``enqueued_at`` says when a task was last
sent for it (None: never, or the send failed).

:func:`sweep`, run by beat every 30 s (``integrations.sweep_webhooks``), sends
``integrations.process_webhook`` again for events still ``received`` whose ``enqueued_at`` is
None, or older than :func:`stale_after` (the broker's visibility timeout, and at least five
minutes: before that, a message taken by a worker that died may still come back by itself).
Each send uses the task id ``webhook-{event_id}`` and ``process_webhook`` takes an event only
while it is ``received``, so a second send of one event runs nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from spark_integrations.constants import QUEUE_WEBHOOKS, TASK_PROCESS_WEBHOOK
from spark_integrations.store.models import WebhookEvent
from spark_integrations.store.types import utcnow

__all__ = [
    "MIN_STALE_AFTER",
    "SWEEP_BATCH",
    "enqueue",
    "mark_unsent",
    "stale_after",
    "sweep",
    "task_id_of",
]

log = logging.getLogger(__name__)

#: Events one sweep sends at most; the rest wait for the next run, 30 s later.
SWEEP_BATCH = 500
#: Seconds an event sent once waits before the sweep sends it again, at the least.
MIN_STALE_AFTER = 300


def task_id_of(event_id: str) -> str:
    """The task id of the ``process_webhook`` task of one event (the same on every send)."""
    return f"webhook-{event_id}"


def stale_after(visibility_timeout: int) -> int:
    """Seconds after its last send an unprocessed event is sent again."""
    return max(int(visibility_timeout), MIN_STALE_AFTER)


def enqueue(app: Celery, event_id: str, *, retry_policy: Mapping[str, Any] | None = None) -> None:
    """Send ``integrations.process_webhook`` for one stored event (kwargs: its id alone).

    Raises whatever the broker's client raises when the message cannot be sent.
    """
    options: dict[str, Any] = {}
    if retry_policy is not None:
        options = {"retry": True, "retry_policy": dict(retry_policy)}
    app.send_task(
        TASK_PROCESS_WEBHOOK,
        kwargs={"event_id": event_id},
        task_id=task_id_of(event_id),
        queue=QUEUE_WEBHOOKS,
        **options,
    )


def mark_unsent(session: Session, event_id: str) -> None:
    """Say no task is on its way for an event still ``received`` (its send failed), so the
    next sweep sends it rather than waiting for its stale time."""
    session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == "received")
        .values(enqueued_at=None)
        .execution_options(synchronize_session=False)
    )


def sweep(
    session: Session,
    send: Callable[[str], None],
    *,
    stale_seconds: int,
    limit: int = SWEEP_BATCH,
    now: datetime | None = None,
) -> int:
    """Send the task again for up to ``limit`` events no task has taken; returns how many.

    Oldest first. Rows are locked (``SKIP LOCKED`` on PostgreSQL) so two sweeps at once share
    the work rather than double it. Each event is sent, then marked: a crash in between sends
    it twice, which the task absorbs; the other order could leave it unsent for a while. A
    failing send ends the run (the broker is gone): what was sent stays marked.
    """
    now = now or utcnow()
    due = (
        select(WebhookEvent.id)
        .where(
            WebhookEvent.status == "received",
            or_(
                WebhookEvent.enqueued_at.is_(None),
                WebhookEvent.enqueued_at < now - timedelta(seconds=stale_seconds),
            ),
        )
        .order_by(WebhookEvent.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    sent: list[str] = []
    for event_id in session.scalars(due).all():
        try:
            send(event_id)
        except Exception as exc:  # kombu's and redis' errors alike: the broker is unreachable
            log.warning(
                "sweep: sending the task of webhook event %s failed (%s); %d sent before",
                event_id, type(exc).__name__, len(sent),
            )  # fmt: skip
            break
        sent.append(event_id)
    if sent:
        session.execute(
            update(WebhookEvent).where(WebhookEvent.id.in_(sent)).values(enqueued_at=now)
        )
    return len(sent)
