"""One event to one subscriber: claimed in the store, signed and posted, settled.

Each attempt goes through the store, never through a broker countdown: a wait of hours in a
Redis message outlives the visibility timeout and is handed out again and again (NOTES.md,
kombu #337). So:

* :func:`claim` takes attempt number ``n + 1`` of a pending delivery whose ``attempts`` is ``n``
  (a conditional update under the row's lock): two messages for one attempt (the sweep sent one
  again while the first waited in its queue) make one attempt, and a message for an attempt
  already made does nothing. The claim holds the delivery for a lease (longer than any attempt
  can take); a worker lost mid-attempt leaves it due when the lease ends.
* The attempt posts the event (:func:`post_event`) or, for a spark subscriber, sends the
  workflow's run as ``integrations.call`` (:func:`run_workflow`).
* :func:`settle` writes the outcome (``last_error`` is set again only then, so a pending
  delivery with none has an attempt under way or none made yet): delivered; or the next
  attempt's time, from
  :data:`RETRY_SCHEDULE`; or failed once the schedule is spent (the caller then writes a dead
  letter). A ``410 Gone`` disables the subscriber: it said it wants nothing more.
* :func:`take_due` gives the sweep the deliveries whose time has come.

Posts follow Standard Webhooks: ``webhook-id`` is the event's id (the same on every attempt, so
a receiver drops repeats), ``webhook-timestamp`` the attempt's time, ``webhook-signature``
``v1,`` and the HMAC-SHA256 of ``id.timestamp.body`` (the ``standardwebhooks`` package's
``Webhook.sign``); the body is ``{"type", "timestamp", "data"}``. A 2xx answer delivers it;
redirects are not followed (a 3xx is a failed attempt). Error sentences name the status or the
kind of failure, never the URL (which may carry a token) nor a library's text about it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from spark_integrations.constants import QUEUE_CALLS, TASK_CALL, USER_AGENT
from spark_integrations.destinations.spark import RUN_WORKFLOW
from spark_integrations.destinations.templates import compact_json
from spark_integrations.store.models_webhooks import OutboundDelivery, OutboundEvent, Subscriber
from spark_integrations.store.types import iso_z, utcnow
from spark_integrations.webhooks.outbound import spark_key

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "RETRY_SCHEDULE",
    "Claim",
    "Outcome",
    "Settled",
    "claim",
    "event_body",
    "post_event",
    "run_workflow",
    "settle",
    "take_due",
]

#: Seconds before each attempt, from the event (the first) or the attempt before: Standard
#: Webhooks' (and Svix's) schedule, immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h:
#: eight attempts over about 28 hours.
RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
#: Seconds to connect to a receiver, and to wait for each part of its answer.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
_ERROR_CHARS = 500


@dataclass(frozen=True)
class Claim:
    """One attempt of one delivery, as its worker makes it."""

    delivery_id: str
    event_id: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime
    subscriber_id: str
    kind: str
    #: This attempt's number (1 for the first).
    attempt: int
    url: str | None = None
    #: The subscriber's sealed secret (a Fernet token); decrypted by the caller.
    secret: bytes | None = field(default=None, repr=False)
    spark_connection_id: str | None = None
    workflow_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How an attempt went: ``ok``, or ``error`` (one sentence); ``gone`` for a 410."""

    ok: bool
    error: str | None = None
    gone: bool = False


@dataclass(frozen=True)
class Settled:
    """What :func:`settle` wrote: ``delivered``, ``retried`` (``next_at`` set), ``failed``
    (the schedule is spent, or the receiver is gone), or ``stale`` (nothing: the delivery had
    moved on meanwhile)."""

    outcome: Literal["delivered", "retried", "failed", "stale"]
    next_at: datetime | None = None
    gone: bool = False


def claim(
    session: Session,
    delivery_id: str,
    *,
    attempt: int | None,
    lease: float,
    now: datetime | None = None,
) -> Claim | None:
    """Take the next attempt of a delivery; None when there is nothing to do.

    Args:
        attempt: how many attempts the message's sender saw made (the claim succeeds only if
            that is still so), or None for an operator's replay of a failed delivery (a dead
            letter's), which starts its attempts over.
        lease: seconds the delivery is held for this attempt.
    """
    now = now or utcnow()
    row = session.get(OutboundDelivery, delivery_id, with_for_update=True, populate_existing=True)
    if row is None:
        return None
    if attempt is None:
        if row.status != "failed":
            return None  # delivered, or still being tried by the fleet
        row.status, row.attempts, row.last_error = "pending", 0, None
    elif row.status != "pending" or row.attempts != attempt:
        return None
    subscriber = session.get(Subscriber, row.subscriber_id)
    event = session.get(OutboundEvent, row.event_id)
    if subscriber is None or event is None:
        return None  # removed meanwhile (its deliveries go with it)
    if not subscriber.enabled:
        row.status = "failed"
        row.last_error = "the subscriber is disabled; the event was not sent."
        return None
    row.attempts += 1
    row.next_attempt_at = now + timedelta(seconds=lease)
    row.last_error = None  # the error of the attempt that ended last: none while one is under way
    return Claim(
        delivery_id=row.id,
        event_id=event.id,
        event_type=event.type,
        data=dict(event.data or {}),
        created_at=event.created_at,
        subscriber_id=subscriber.id,
        kind=subscriber.kind,
        attempt=row.attempts,
        url=subscriber.url,
        secret=subscriber.secret,
        spark_connection_id=subscriber.spark_connection_id,
        workflow_id=subscriber.workflow_id,
    )


def settle(
    session: Session,
    done: Claim,
    outcome: Outcome,
    *,
    schedule: tuple[float, ...] = RETRY_SCHEDULE,
    now: datetime | None = None,
) -> Settled:
    """Write how an attempt went (module docstring)."""
    now = now or utcnow()
    row = session.get(
        OutboundDelivery, done.delivery_id, with_for_update=True, populate_existing=True
    )
    if row is None or row.status != "pending":
        return Settled("stale")
    if outcome.ok:
        row.status, row.delivered_at, row.last_error = "delivered", now, None
        return Settled("delivered")
    if row.attempts != done.attempt:
        return Settled("stale")  # its lease ran out and a later attempt took it
    row.last_error = (outcome.error or "the attempt failed.")[:_ERROR_CHARS]
    if outcome.gone:
        row.status = "failed"
        subscriber = session.get(Subscriber, done.subscriber_id)
        if subscriber is not None:
            subscriber.enabled = False
        return Settled("failed", gone=True)
    if done.attempt >= len(schedule):
        row.status = "failed"
        return Settled("failed")
    row.next_attempt_at = now + timedelta(seconds=schedule[done.attempt])
    return Settled("retried", next_at=row.next_attempt_at)


def take_due(
    session: Session, *, lease: float, limit: int = 500, now: datetime | None = None
) -> list[tuple[str, int]]:
    """Pending deliveries whose next attempt is due, held for ``lease`` seconds (their messages
    are about to be sent); each with the attempts made so far."""
    now = now or utcnow()
    rows = session.scalars(
        select(OutboundDelivery)
        .where(OutboundDelivery.status == "pending", OutboundDelivery.next_attempt_at <= now)
        .order_by(OutboundDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    due = []
    for row in rows:
        row.next_attempt_at = now + timedelta(seconds=lease)
        due.append((row.id, row.attempts))
    return due


def event_body(done: Claim) -> bytes:
    """The body posted: ``{"type", "timestamp", "data"}`` (Standard Webhooks' shape), compact."""
    body = {"type": done.event_type, "timestamp": iso_z(done.created_at), "data": done.data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def post_event(done: Claim, secret: str, *, now: datetime | None = None) -> Outcome:
    """Post the event to the subscriber's URL, signed with ``secret``."""
    assert done.url is not None
    body = event_body(done)
    stamp = now or datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": done.event_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(done.event_id, stamp, body),
    }
    try:
        answer = requests.post(
            done.url,
            data=body,
            headers=headers,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            allow_redirects=False,
            stream=True,  # the answer's body is never read
        )
    except requests.ConnectTimeout:
        return Outcome(False, f"the receiver took no connection within {CONNECT_TIMEOUT:g} s.")
    except requests.Timeout:
        return Outcome(False, f"the receiver did not answer within {READ_TIMEOUT:g} s.")
    except requests.ConnectionError:
        return Outcome(False, "the receiver could not be reached (refused, reset or unknown host).")
    except (requests.RequestException, OSError, ValueError) as exc:
        return Outcome(False, f"the request to the receiver failed ({type(exc).__name__}).")
    with answer:
        status = answer.status_code
    if 200 <= status < 300:
        return Outcome(True)
    if status == 410:
        return Outcome(
            False, "the receiver answered 410 Gone; the subscriber was disabled.", gone=True
        )
    redirect = " (a redirect, which is not followed)" if 300 <= status < 400 else ""
    return Outcome(False, f"the receiver answered HTTP {status}{redirect}.")


def spark_input(done: Claim) -> str:
    """The workflow's input: the event as compact JSON, its id included (no headers carry it)."""
    return compact_json(
        {
            "id": done.event_id,
            "type": done.event_type,
            "timestamp": iso_z(done.created_at),
            "data": done.data,
        }
    )


def run_workflow(done: Claim, send: Any = None) -> Outcome:
    """Send the spark subscriber's workflow run as ``integrations.call`` (``run_workflow`` of
    its spark connection, with the event as input, under :func:`spark_key`). Delivered once the
    broker took the call: the call has its own retries and dead letters."""
    if send is None:
        from celery import current_app, current_task

        send = (current_task.app if current_task else current_app).send_task
    try:
        send(
            TASK_CALL,
            kwargs={
                "connection_id": done.spark_connection_id,
                "action": RUN_WORKFLOW,
                "params": {"workflow_id": done.workflow_id, "input": spark_input(done)},
                "idempotency_key": spark_key(done.event_id, done.subscriber_id),
            },
            queue=QUEUE_CALLS,
        )
    except Exception as exc:  # the broker, whatever its client raises
        return Outcome(
            False, f"the workflow's run was not handed to the broker ({type(exc).__name__})."
        )
    return Outcome(True)
