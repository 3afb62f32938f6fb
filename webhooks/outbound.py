"""The fleet's events, stored for their subscribers and handed to the workers that post them.

:func:`emit` is called where something happens: a sync run ended, a connection needs
re-authorisation, a dead letter was written, an incoming webhook was taken. It never raises and
never waits on a subscriber:

1. One short transaction reads the enabled subscribers and, only when one of them wants the
   event, stores the event and a pending delivery for each that does. When none does, nothing
   is written and the broker is not touched: the common case (every sync's end) costs one
   small read.
2. Then ``integrations.deliver_event`` is sent for each delivery, with a short broker timeout.
   A broker that is down costs that timeout once; the deliveries are left due, and the sweep
   (``integrations.sweep_deliveries``, every few seconds from beat) sends them once it is back.

A delivery handed to the broker is not sent again by the sweep for :data:`DISPATCH_LEASE`
seconds (its message is on its way); after that it is, and the claim in the store
(:func:`webhooks.delivery.claim`) makes the second message a no-op if the first one arrives too.

An event's ``data`` holds ids, counts, statuses and error sentences, never a secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from spark_integrations.constants import (
    EVENT_DEAD_LETTER_WRITTEN,
    EVENT_SYNC_FAILED,
    EVENT_SYNC_SUCCEEDED,
    QUEUE_WEBHOOKS,
    TASK_DELIVER_EVENT,
)
from spark_integrations.settings_current import current_settings
from spark_integrations.store import SyncRun, session_scope
from spark_integrations.store.models_webhooks import OutboundDelivery, OutboundEvent, Subscriber
from spark_integrations.store.types import iso_z, utcnow
from spark_integrations.webhooks.subscribers import matches

__all__ = [
    "DISPATCH_LEASE",
    "SEND_RETRY_POLICY",
    "SPARK_KEY_PREFIX",
    "announce_dead_letter",
    "announce_run",
    "emit",
    "record_event",
    "send_deliveries",
    "send_delivery",
    "spark_key",
    "spark_key_parts",
]

log = logging.getLogger(__name__)

#: The idempotency keys of spark subscribers' runs start so (:func:`spark_key`).
SPARK_KEY_PREFIX = "event:"
#: Seconds a delivery handed to the broker waits for its worker before the sweep sends it again.
DISPATCH_LEASE = 120.0
#: One quick retry of a publish: a broker that is down is not waited for (the sweep sends later).
SEND_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as JSON holds it (a datetime as its text)."""
    value = json.loads(json.dumps(dict(data), default=str))
    assert isinstance(value, dict)
    return value


def record_event(
    session: Session,
    event_type: str,
    data: Mapping[str, Any],
    *,
    exclude: Collection[str] = (),
    caused_by: str | None = None,
    only: str | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Store the event and a pending delivery for each enabled subscriber that wants it (or for
    the subscriber ``only``, whatever it wants); the deliveries' ids. Nothing is written when
    no subscriber wants the event.

    Args:
        exclude: subscribers not to send it to (the one whose failed delivery it reports).
        caused_by: the event whose delivery failed, when this one reports that failure: if it
            was itself a ``dead_letter.written``, nothing is written (no report of a report).
        only: send it to this subscriber alone (``subscribers test``).
    """
    if caused_by is not None:
        cause = session.scalar(select(OutboundEvent.type).where(OutboundEvent.id == caused_by))
        if cause == EVENT_DEAD_LETTER_WRITTEN:
            return []
    stmt = select(Subscriber.id, Subscriber.events)
    stmt = stmt.where(Subscriber.id == only) if only else stmt.where(Subscriber.enabled.is_(True))
    wanted = [
        sid
        for sid, patterns in session.execute(stmt)
        if sid not in exclude and (only is not None or matches(list(patterns or ()), event_type))
    ]
    if not wanted:
        return []
    now = now or utcnow()
    event = OutboundEvent(type=event_type, data=_plain(data), created_at=now)
    session.add(event)
    session.flush()
    # Handed to the broker right after this commit; the sweep waits the lease before it
    # sends them again (send_deliveries makes them due at once if the broker refuses).
    leased = now + timedelta(seconds=DISPATCH_LEASE)
    deliveries = [
        OutboundDelivery(
            subscriber_id=sid,
            event_id=event.id,
            status="pending",
            attempts=0,
            next_attempt_at=leased,
            created_at=now,
        )
        for sid in wanted
    ]
    session.add_all(deliveries)
    session.flush()
    return [d.id for d in deliveries]


def send_delivery(delivery_id: str, attempt: int, app: Celery | None = None) -> None:
    """Send ``integrations.deliver_event`` for attempt number ``attempt + 1`` of a delivery
    (``attempt`` is how many were made: a message for an attempt already made does nothing)."""
    if app is None:
        from celery import current_app, current_task

        # The app of the task running here (a worker's), else the process's current one.
        app = current_task.app if current_task else current_app
    app.send_task(
        TASK_DELIVER_EVENT,
        kwargs={"delivery_id": delivery_id, "attempt": attempt},
        queue=QUEUE_WEBHOOKS,
        retry=True,
        retry_policy=SEND_RETRY_POLICY,
    )


def send_deliveries(database_url: str, delivery_ids: list[str], app: Celery | None = None) -> int:
    """Send each new delivery's first attempt; how many were sent. When the broker refuses
    one, the rest are not tried and are made due at once for the sweep. Never raises."""
    sent = 0
    try:
        for delivery_id in delivery_ids:
            send_delivery(delivery_id, 0, app)
            sent += 1
    except Exception as exc:  # the broker, whatever its client raises: the sweep sends them
        left = delivery_ids[sent:]
        log.warning(
            "%d event deliveries were not handed to the broker (%s); the sweep sends them.",
            len(left),
            type(exc).__name__,
        )
        try:
            with session_scope(database_url) as session:
                session.execute(
                    update(OutboundDelivery)
                    .where(OutboundDelivery.id.in_(left), OutboundDelivery.status == "pending")
                    .where(OutboundDelivery.attempts == 0)
                    .values(next_attempt_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
        except Exception as again:  # the sweep sends them once their lease is over
            log.warning("event deliveries stay leased for %.0f s (%s).", DISPATCH_LEASE, again)
    return sent


def emit(
    event_type: str,
    data: Mapping[str, Any],
    *,
    exclude: Collection[str] = (),
    caused_by: str | None = None,
) -> None:
    """Tell the subscribers who want it that ``event_type`` happened, with ``data`` (ids,
    counts, statuses, error sentences; never a secret). Never raises, never waits on a
    subscriber; see the module docstring.

    Args:
        exclude: subscribers not to tell (the one whose failed delivery the event reports).
        caused_by: the event whose failed delivery this one reports (:func:`record_event`).
    """
    try:
        url = current_settings().database_url
        with session_scope(url) as session:
            delivery_ids = record_event(
                session, event_type, data, exclude=exclude, caused_by=caused_by
            )
    except Exception as exc:  # never the caller's failure: its own work is done and committed
        log.warning("event %s was not stored for its subscribers: %s", event_type, exc)
        return
    if delivery_ids:
        send_deliveries(url, delivery_ids)


def announce_run(run: SyncRun, *, connection_id: str | None, stream: str | None) -> None:
    """Emit ``sync.succeeded`` or ``sync.failed`` for a run that just ended (after its commit)."""
    failed = run.status == "failed"
    data: dict[str, Any] = {
        "sync_id": run.sync_id,
        "run_id": run.id,
        "connection_id": connection_id,
        "stream": stream,
        "full_refresh": run.full_refresh,
        "status": run.status,
        "records": run.records,
        "pages": run.pages,
        "started_at": iso_z(run.started_at),
        "finished_at": iso_z(run.finished_at),
    }
    if failed:
        data["error"] = run.error
    emit(EVENT_SYNC_FAILED if failed else EVENT_SYNC_SUCCEEDED, data)


def spark_key(event_id: str, subscriber_id: str) -> str:
    """The idempotency key of a spark subscriber's run of one event: sent once, however often
    the delivery is tried or replayed."""
    return f"{SPARK_KEY_PREFIX}{event_id}:{subscriber_id}"


def spark_key_parts(key: Any) -> tuple[str, str] | None:
    """(event id, subscriber id) of a :func:`spark_key`; None for any other key."""
    if not isinstance(key, str) or not key.startswith(SPARK_KEY_PREFIX):
        return None
    event_id, sep, subscriber_id = key[len(SPARK_KEY_PREFIX) :].partition(":")
    return (event_id, subscriber_id) if sep and event_id and subscriber_id else None


def announce_dead_letter(
    data: Mapping[str, Any],
    *,
    subscriber_id: str | None = None,
    event_id: str | None = None,
    idempotency_key: Any = None,
) -> None:
    """Emit ``dead_letter.written``. A letter of a delivery to a subscriber (``subscriber_id``
    and ``event_id``, or the ``idempotency_key`` of a spark subscriber's run) is not told to
    that subscriber, nor to anyone when the event it failed to deliver was itself a
    ``dead_letter.written``: failing subscribers cannot feed each other reports forever."""
    parts = spark_key_parts(idempotency_key)
    if parts is not None and subscriber_id is None:
        event_id, subscriber_id = parts
    exclude = {subscriber_id} if subscriber_id else set()
    emit(EVENT_DEAD_LETTER_WRITTEN, data, exclude=exclude, caused_by=event_id)
