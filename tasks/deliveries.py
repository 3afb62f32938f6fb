"""Outgoing webhooks at work: ``integrations.deliver_event`` and ``integrations.sweep_deliveries``.

``deliver_event`` makes one attempt of one delivery (:mod:`webhooks.delivery`): claimed in the
store, posted (or, for a spark subscriber, the workflow's run sent as ``integrations.call``),
settled. A failed attempt is not retried with a broker countdown: :func:`webhooks.delivery.settle`
writes when the next one is due, and ``sweep_deliveries``, run by beat every few seconds, sends
the due ones. A delivery whose schedule is spent fails with a dead letter; ``dlq replay`` of it
sends ``deliver_event`` with the delivery's id alone, which starts its attempts over.

Every attempt is counted in ``event_deliveries`` (``delivered``, ``retried``, ``failed``).

A delivery's dead letter is announced as ``dead_letter.written`` to the other subscribers (not to
the one that failed), and never when the event that failed was itself a ``dead_letter.written``
(:func:`webhooks.outbound.announce_dead_letter`, which also guards the dead letter of a spark
subscriber's run): two failing subscribers cannot feed each other events forever.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from spark_integrations import metrics
from spark_integrations.constants import (
    TASK_DELIVER_EVENT,
    TASK_SWEEP_DELIVERIES,
)
from spark_integrations.errors import IntegrationError, UsageError
from spark_integrations.tasks.base import FleetTask, record_failure
from spark_integrations.tasks.context import current_settings, store_session
from spark_integrations.tasks.kwargs import check_id
from spark_integrations.tasks.lookup import secret_box
from spark_integrations.webhooks.delivery import (
    Claim,
    Outcome,
    Settled,
    claim,
    post_event,
    run_workflow,
    settle,
    take_due,
)
from spark_integrations.webhooks.outbound import (
    DISPATCH_LEASE,
    announce_dead_letter,
    send_delivery,
)

__all__ = ["deliver_event", "sweep_deliveries"]

log = logging.getLogger(__name__)

#: Deliveries one sweep sends at most (the rest wait for the next sweep, seconds later).
SWEEP_BATCH = 500


def attempt_lease() -> float:
    """Seconds an attempt holds its delivery: longer than the task may run, so a delivery is
    never tried twice at once; a worker lost mid-attempt leaves it due when the lease ends."""
    return float(current_settings().task_time_limit) + 30.0


def _attempt(done: Claim) -> Outcome:
    if done.kind == "spark":
        return run_workflow(done)
    if done.secret is None:
        return Outcome(False, "the subscriber holds no signing secret.")
    try:
        secret = secret_box().decrypt(done.secret)
    except IntegrationError as exc:  # SecretError: the key that sealed it is gone
        return Outcome(False, f"the subscriber's secret cannot be read: {exc}")
    return post_event(done, secret)


def _dead_letter(task_id: str | None, done: Claim, error: str) -> None:
    """The delivery's dead letter, and its announcement to the other subscribers."""
    sentence = (
        f"event {done.event_id} ({done.event_type}) was not delivered to subscriber "
        f"{done.subscriber_id} after {done.attempt} attempts: {error}"
    )
    letter = record_failure(
        task=TASK_DELIVER_EVENT,
        task_id=task_id,
        kwargs={"delivery_id": done.delivery_id},  # replayed, it starts the attempts over
        error=sentence,
        attempts=done.attempt,
    )
    announce_dead_letter(
        {
            "dead_letter_id": letter,
            "task": TASK_DELIVER_EVENT,
            "error": sentence,
            "attempts": done.attempt,
            "subscriber_id": done.subscriber_id,
            "event_id": done.event_id,
            "event_type": done.event_type,
        },
        subscriber_id=done.subscriber_id,
        event_id=done.event_id,
    )


def _settled(task_id: str | None, done: Claim, outcome: Outcome) -> Settled:
    with store_session() as session:
        settled = settle(session, done, outcome)
    if settled.outcome != "stale":
        metrics.count("event_deliveries", outcome=settled.outcome)
    if settled.outcome == "retried":
        log.info(
            "delivery %s of event %s to subscriber %s: attempt %d failed (%s); next at %s.",
            done.delivery_id, done.event_id, done.subscriber_id, done.attempt,
            outcome.error, settled.next_at,
        )  # fmt: skip
    elif settled.gone:
        log.warning(
            "subscriber %s answered 410 Gone and was disabled; event %s not delivered.",
            done.subscriber_id,
            done.event_id,
        )
    elif settled.outcome == "failed":
        _dead_letter(task_id, done, outcome.error or "the attempt failed.")
    return settled


@shared_task(name=TASK_DELIVER_EVENT, base=FleetTask, bind=True)
def deliver_event(
    self: FleetTask, delivery_id: Any = None, attempt: Any = None, **unknown: Any
) -> dict[str, Any]:
    """Make the next attempt of one delivery; see the module docstring.

    ``attempt`` is the fleet's own: the attempts its sender saw made. Without it (a dead
    letter's replay) a failed delivery starts its attempts over.
    """
    if unknown:
        raise UsageError(
            f"integrations.deliver_event takes no argument {sorted(unknown)[0]!r}; "
            "it takes delivery_id."
        )
    check_id("delivery_id", delivery_id)
    if attempt is not None and (
        isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0
    ):
        raise UsageError("attempt must be a whole number >= 0.")
    with store_session() as session:
        done = claim(session, delivery_id, attempt=attempt, lease=attempt_lease())
    if done is None:
        return {"ok": True, "delivery_id": delivery_id, "skipped": True}
    outcome = _attempt(done)
    settled = _settled(self.request.id, done, outcome)
    answer: dict[str, Any] = {
        "ok": outcome.ok,
        "delivery_id": delivery_id,
        "event_id": done.event_id,
        "attempt": done.attempt,
        "status": settled.outcome,
    }
    if outcome.error:
        answer["error"] = outcome.error
    return answer


@shared_task(name=TASK_SWEEP_DELIVERIES, base=FleetTask, bind=True)
def sweep_deliveries(self: FleetTask) -> dict[str, int]:
    """Send ``deliver_event`` for every delivery whose attempt is due (retries, first attempts
    the broker did not take, attempts whose worker was lost); returns how many."""
    with store_session() as session:
        due = take_due(session, lease=DISPATCH_LEASE, limit=SWEEP_BATCH)
        # Published before the commit that holds them: a crash in between sends one twice,
        # which the claim absorbs; the other order could leave one held with no message.
        for delivery_id, attempts in due:
            send_delivery(delivery_id, attempts, self.app)
    return {"sent": len(due)}
