"""``integrations.sweep_webhooks``: beat's sweep of stored webhook events no task has taken.

The gateway answers 2xx once an event is stored, whether or not the broker took its task; this
task, run by beat every 30 s, sends ``integrations.process_webhook`` for events still
``received`` that were never sent or were sent too long ago (:mod:`webhooks.sweep`).
"""

from __future__ import annotations

from celery import current_app, shared_task

from spark_integrations.constants import TASK_SWEEP_WEBHOOKS
from spark_integrations.tasks.base import FleetTask
from spark_integrations.tasks.context import current_settings, store_session
from spark_integrations.webhooks.sweep import SWEEP_BATCH, enqueue, stale_after, sweep

__all__ = ["sweep_webhooks"]


@shared_task(name=TASK_SWEEP_WEBHOOKS, base=FleetTask, bind=True)
def sweep_webhooks(self: FleetTask) -> dict[str, int]:
    """Send the task of up to :data:`SWEEP_BATCH` unsent or stale events; returns how many."""
    stale = stale_after(current_settings().visibility_timeout)
    with store_session() as session:
        sent = sweep(
            session, lambda event_id: enqueue(current_app, event_id), stale_seconds=stale,
            limit=SWEEP_BATCH,
        )  # fmt: skip
    return {"sent": sent}
