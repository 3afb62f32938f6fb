"""``integrations.process_webhook``: what one stored webhook event sets off, done once.

The intake stores an event and sends this task with its id (CONTRACT.md: kwargs ``event_id``;
result ``{"ok": true, "event_id", "routes", ...}``). The task holds the event in the store
(:func:`webhooks.processing.claim_event`: a conditional ``UPDATE``, so of every task sent for
one event one processes it at a time), works out what it sets off (its connection's matching
routes, else the streams its connector declares for it: :func:`webhooks.plan.plan_event`),
sends those tasks (``integrations.sync``, ``integrations.call`` with the route's idempotency
key) and records what it sent as the event's result (``processed``).

A redelivered or repeated task answers the stored result; a task meeting an event another one
holds comes back later (the holder is taken for dead after the visibility timeout). A failure
(the store, the broker or Redis failing mid-way) sends the event back to ``received`` and
retries with backoff (:func:`tasks.retrypolicy.retry_wait`); after :data:`MAX_ATTEMPTS` failed
attempts the event is ``failed`` with the error, a dead letter is written and the task fails
with the same sentence. Malformed kwargs fail at once, with a dead letter. Counted in the
``webhooks_processed`` family (``processed``, ``retried``, ``failed``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, NoReturn

from celery import shared_task
from sqlalchemy import update

from spark_integrations import metrics
from spark_integrations.constants import EVENT_WEBHOOK_RECEIVED, TASK_PROCESS_WEBHOOK
from spark_integrations.errors import (
    CoordinationError,
    IntegrationError,
    PoisonMessageError,
    StoreError,
    UsageError,
    WebhookFailedError,
)
from spark_integrations.redaction import hide_urls
from spark_integrations.store import WebhookEvent
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.base import FleetTask, delivery_key, record_failure
from spark_integrations.tasks.context import coordination_redis, current_settings, store_session
from spark_integrations.tasks.kwargs import check_id
from spark_integrations.tasks.request import STORE_RETRY
from spark_integrations.tasks.retrypolicy import retry_wait
from spark_integrations.webhooks.outbound import emit
from spark_integrations.webhooks.plan import plan_event
from spark_integrations.webhooks.processing import (
    Claim,
    claim_event,
    fail_event,
    release_event,
    settle_event,
)

__all__ = ["MAX_ATTEMPTS", "WebhookTask", "process", "process_webhook"]

log = logging.getLogger(__name__)

#: Failed attempts at processing one event before it is ``failed`` and dead-lettered (the
#: retry policy's attempts, :class:`tasks.retrypolicy.RetryBudget`).
MAX_ATTEMPTS = 8
#: The longest wait before a task looks again at an event another task holds.
BUSY_POLL = 30.0


def _error_text(exc: BaseException) -> str:
    """A failure as one sentence: the fleet's own as it says, anything else named by its type
    (URLs in it masked: a broker's address may carry a password)."""
    if isinstance(exc, IntegrationError):
        return str(exc)
    text = " ".join(hide_urls(str(exc)).split())[:500]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WebhookTask(FleetTask):
    """:class:`FleetTask` whose poison messages also end their event as ``failed``."""

    abstract = True

    def check_delivery(self, deliveries: int, kwargs: dict[str, Any]) -> None:
        try:
            super().check_delivery(deliveries, kwargs)
        except PoisonMessageError as exc:
            event_id = kwargs.get("event_id")
            if isinstance(event_id, str):
                _fail_poisoned(event_id, self.request.id or "", str(exc))
            raise


def _fail_poisoned(event_id: str, task_id: str, error: str) -> None:
    """Best effort: the event a poison message was for is ``failed`` (so the sweep, which
    sends ``received`` events again, does not send it to its death once more)."""
    try:
        with store_session() as session:
            session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.id == event_id,
                    WebhookEvent.status.in_(("received", "processing")),
                )
                .values(
                    status="failed",
                    error=error,
                    result={"task_id": task_id},
                    processed_at=utcnow(),
                )
            )
    except IntegrationError as exc:
        log.warning("webhook event %s: marking it failed failed too (%s)", event_id, exc)


class _Processing:
    """One execution of ``integrations.process_webhook`` (one delivery of one message)."""

    def __init__(self, task: WebhookTask, event_id: Any) -> None:
        self.task = task
        self.event_id = event_id
        self.task_id: str = task.request.id or ""
        self.retries: int = task.request.retries or 0
        self.kwargs = {"event_id": event_id}
        self.visibility = float(current_settings().visibility_timeout)

    def refuse(self, error: str) -> NoReturn:
        """Malformed kwargs or an unknown event: a dead letter, and the task fails at once."""
        record_failure(
            task=TASK_PROCESS_WEBHOOK, task_id=self.task_id or None, kwargs=self.kwargs,
            error=error, attempts=0,
        )  # fmt: skip
        raise UsageError(error)

    def come_back(self, countdown: float) -> NoReturn:
        """Look again later without using an attempt (the store was down, another task holds
        the event); this delivery's count is done with (no after_return runs for a retry)."""
        request = self.task.request
        if request.id:
            with contextlib.suppress(CoordinationError):  # the count expires by itself
                coordination_redis().delete(delivery_key(request.id, request.retries or 0))
        countdown = max(0.5, min(countdown, self.visibility * 0.5))
        raise self.task.retry(countdown=countdown, max_retries=None)

    def run(self) -> dict[str, Any]:
        try:
            with store_session() as session:
                claim = claim_event(
                    session, self.event_id, task_id=self.task_id, retries=self.retries,
                    stale_after=self.visibility,
                )  # fmt: skip
        except (StoreError, CoordinationError):
            self.come_back(STORE_RETRY)
        if claim.kind == "missing":
            self.refuse(
                f"no webhook event {self.event_id!r}: it was never stored, or its connection "
                "was removed."
            )
        if claim.kind == "done":
            return {"ok": True, "event_id": self.event_id, **claim.result}
        if claim.kind == "failed":
            raise WebhookFailedError(claim.error)
        if claim.kind == "busy":
            # Soon at first (a holder usually ends within a second), then less often.
            self.come_back(min(BUSY_POLL, claim.wait + 1.0, 2.0 ** min(self.retries, 5)))
        try:
            result = self.process(claim)
        except Exception as exc:  # any failure mid-way is retried, then dead-lettered
            self.failed(claim, exc)
        metrics.count("webhooks_processed", provider=claim.provider, outcome="processed")
        return {"ok": True, "event_id": self.event_id, **result}

    def process(self, claim: Claim) -> dict[str, Any]:
        """Send what the held event sets off and record it as the event's result."""
        with store_session() as session:
            event = session.get(WebhookEvent, self.event_id)
            if event is None:  # its connection was removed meanwhile
                return {"routes": 0}
            plan = plan_event(session, event, claim.replay)
        runs = []
        for send in plan.sends:
            sent = self.task.app.send_task(send.task, kwargs=send.kwargs, queue=send.queue)
            runs.append({**send.entry, "task_id": sent.id})
        for skipped in plan.skipped:
            log.warning(
                "webhook event %s: route %s skipped: %s",
                self.event_id, skipped["route_id"], skipped["reason"],
            )  # fmt: skip
        result = plan.result(runs, claim.replay)
        with store_session() as session:
            settled = settle_event(session, self.event_id, claim.attempts, result)
            if not settled:
                # Taken for dead and taken over meanwhile: the other holder records its own.
                log.warning("webhook event %s was taken over while processed", self.event_id)
        if settled:  # told once per processing, by the holder that recorded it
            emit(EVENT_WEBHOOK_RECEIVED, {
                "event_id": event.id, "provider": event.provider,
                "connection_id": event.connection_id, "delivery_id": event.delivery_id,
                "event_type": event.event_type, "routes": result.get("routes", 0),
                "replay": claim.replay,
            })  # fmt: skip
        return result

    def failed(self, claim: Claim, exc: Exception) -> NoReturn:
        """Back to ``received`` and retry with backoff; past the budget, ``failed`` for good."""
        error = _error_text(exc)
        failures = claim.failures + 1
        held = {"replay": claim.replay, "failures": failures, "task_id": self.task_id,
                "try": self.retries}  # fmt: skip
        if failures < MAX_ATTEMPTS:
            wait = min(retry_wait(failures, None), self.visibility * 0.5)
            log.warning(
                "webhook event %s: attempt %d failed (%s); retrying in %.1f s",
                self.event_id, failures, error, wait,
            )  # fmt: skip
            try:
                with store_session() as session:
                    release_event(session, self.event_id, claim.attempts, error=error, held=held)
            except IntegrationError:
                pass  # still held by this task: its retry (a later try of it) takes it again
            metrics.count("webhooks_processed", provider=claim.provider, outcome="retried")
            raise self.task.retry(countdown=wait, max_retries=None) from None
        final = f"processing webhook event {self.event_id} failed {failures} times: {error}"
        try:
            with store_session() as session:
                fail_event(session, self.event_id, claim.attempts, error=final, held=held)
        except IntegrationError as store_down:
            log.warning("webhook event %s: not marked failed (%s)", self.event_id, store_down)
        metrics.count("webhooks_processed", provider=claim.provider, outcome="failed")
        record_failure(
            task=TASK_PROCESS_WEBHOOK, task_id=self.task_id or None, kwargs=self.kwargs,
            error=final, attempts=failures,
        )  # fmt: skip
        raise WebhookFailedError(final) from None


def process(task: WebhookTask, event_id: Any, unknown: dict[str, Any]) -> dict[str, Any]:
    """One execution of the task: kwargs checked, then the event processed."""
    run = _Processing(task, event_id)
    if unknown:
        run.kwargs.update(unknown)
        run.refuse(
            f"integrations.process_webhook takes no argument {sorted(unknown)[0]!r}; "
            "it takes event_id."
        )
    try:
        check_id("event_id", event_id)
    except UsageError as exc:
        run.refuse(str(exc))
    return run.run()


@shared_task(name=TASK_PROCESS_WEBHOOK, base=WebhookTask, bind=True, max_retries=None)
def process_webhook(self: WebhookTask, event_id: Any = None, **unknown: Any) -> dict[str, Any]:
    """Process one stored webhook event (CONTRACT.md); see the module docstring."""
    return process(self, event_id, unknown)
