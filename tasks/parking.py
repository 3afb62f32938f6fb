"""Parked calls: waits too long for a broker countdown, kept in the store until due.

On Redis, a message whose countdown outlives the visibility timeout is handed out again and again
(kombu #337, celery #2599), so a task told to wait longer than half the visibility timeout (a
provider's long ``Retry-After``, a long-open breaker) is written here instead and its message is
dropped. ``integrations.release_parked``, run by beat every few seconds, sends each due call
again under the same task id, so whoever waits on the result still gets it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import current_app, shared_task
from sqlalchemy import select

from spark_integrations.constants import TASK_RELEASE_PARKED
from spark_integrations.store import ParkedCall
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.base import FleetTask
from spark_integrations.tasks.context import store_session

__all__ = ["park", "release_parked"]

RELEASE_BATCH = 500


def park(
    *, task_id: str, task: str, queue: str, kwargs: dict[str, Any], wait: float, reason: str
) -> None:
    """Keep a call in the store until ``wait`` seconds from now (replacing an older parking)."""
    with store_session() as session:
        row = session.get(ParkedCall, task_id)
        if row is None:
            row = ParkedCall(task_id=task_id)
            session.add(row)
        row.task = task
        row.queue = queue
        row.kwargs = dict(kwargs)
        row.due_at = utcnow() + timedelta(seconds=wait)
        row.reason = reason


@shared_task(name=TASK_RELEASE_PARKED, base=FleetTask, bind=True)
def release_parked(self: FleetTask) -> dict[str, int]:
    """Send every due parked call again, under its own task id; returns how many."""
    sent = 0
    with store_session() as session:
        stmt = (
            select(ParkedCall)
            .where(ParkedCall.due_at <= utcnow())
            .order_by(ParkedCall.due_at)
            .limit(RELEASE_BATCH)
            .with_for_update(skip_locked=True)
        )
        for row in session.scalars(stmt):
            # Published before the row is deleted: a crash in between sends it twice, which the
            # call's journal and idempotency absorb; the other order could lose it.
            current_app.send_task(row.task, kwargs=row.kwargs, queue=row.queue, task_id=row.task_id)
            session.delete(row)
            sent += 1
    return {"released": sent}
