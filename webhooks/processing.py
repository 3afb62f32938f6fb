"""Who holds a stored webhook event while it is processed, and the replay that reopens it.

An event goes ``received`` → ``processing`` → ``processed`` (or ``failed``), each step one
conditional ``UPDATE`` on the status and ``attempts`` read just before (``attempts`` counts the
takes and serves as the row's version), so of any number of tasks sent for one event (the
intake's, the sweep's, a redelivery, a caller's) one holds it at a time, and a holder whose
event was taken from it writes nothing more.

:func:`claim_event` decides what a task does with the event:

* ``received``: taken (``processing``);
* ``processing``: taken when its holder is this task's earlier attempt (same task id, fewer
  retries: it ended in the retry that brought this one), or when it was taken longer than the
  broker's visibility timeout ago (its holder died: no task runs that long); else ``busy``, and
  the task looks again later;
* ``processed``: ``done``, with the stored result (a redelivery answers what was done);
* ``failed``: the same failure for the task that gave up on it; any other task (a dead letter's
  replay) takes it again, with a fresh retry budget and the same route keys.

What the held event sets off is :mod:`webhooks.plan`'s. ``webhooks replay``
(:func:`reopen_event`) processes an event again on purpose: it counts a replay in the event's
result, and the route keys of a replay are its own (:func:`webhooks.plan.idempotency_key`), so
the replay's calls are made rather than answered from the first processing's records.

While an event is processed its ``result`` holds who holds it (``task_id``, ``try``,
``taken_at``), its replay count and its failed attempts; once processed, what it set off
(:meth:`webhooks.plan.Plan.result`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import update
from sqlalchemy.orm import Session

from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store import WebhookEvent
from spark_integrations.store.types import iso_z, utcnow

__all__ = [
    "Claim",
    "claim_event",
    "event_view",
    "fail_event",
    "release_event",
    "reopen_event",
    "settle_event",
]


def event_view(event: WebhookEvent) -> dict[str, Any]:
    """An event as ``webhooks list --json`` shows it (CONTRACT.md)."""
    return {
        "id": event.id,
        "provider": event.provider,
        "connection_id": event.connection_id,
        "delivery_id": event.delivery_id,
        "type": event.event_type,
        "status": event.status,
        "received_at": iso_z(event.received_at),
    }


# -- who holds the event ----------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What a task is to do with an event (see the module docstring)."""

    kind: Literal["taken", "busy", "done", "failed", "missing"]
    #: The event's provider (for metrics), its replay count, and ``attempts`` after the take.
    provider: str = ""
    replay: int = 0
    failures: int = 0
    attempts: int = 0
    #: ``done``: the stored result; ``failed``: the stored error; ``busy``: seconds until the
    #: holder is taken for dead.
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    wait: float = 0.0


def _stamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def claim_event(
    session: Session,
    event_id: str,
    *,
    task_id: str,
    retries: int,
    stale_after: float,
    now: datetime | None = None,
) -> Claim:
    """Take the event for this task (task id and retries), or say why not."""
    now = now or utcnow()
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return Claim("missing")
    held = dict(event.result or {})
    replay, failures = _count(held.get("replay")), _count(held.get("failures"))

    def answer(kind: Any, **more: Any) -> Claim:
        return Claim(kind, provider=event.provider, replay=replay, attempts=event.attempts, **more)

    if event.status == "processed":
        return answer("done", result=held)
    if event.status == "failed":
        if held.get("task_id") == task_id:
            return answer("failed", error=event.error or "processing failed.")
        failures = 0  # taken again on purpose (a dead letter's replay): a fresh retry budget
    elif event.status == "processing":
        taken_at = _stamp(held.get("taken_at"))
        mine = held.get("task_id") == task_id and _count(held.get("try")) < retries
        left = 0.0 if taken_at is None else stale_after - (now - taken_at).total_seconds()
        if not mine and left > 0:
            return answer("busy", wait=left)
    values = {
        "status": "processing",
        "attempts": WebhookEvent.attempts + 1,
        "result": {
            "replay": replay,
            "failures": failures,
            "task_id": task_id,
            "try": retries,
            "taken_at": now.isoformat(),
        },
    }
    taken = session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.status == event.status,
            WebhookEvent.attempts == event.attempts,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        # Another task took it between the read and the update: it holds it now.
        return answer("busy", wait=stale_after)
    return Claim(
        "taken",
        provider=event.provider,
        replay=replay,
        failures=failures,
        attempts=event.attempts + 1,
    )


def _fenced(session: Session, event_id: str, attempts: int, **values: Any) -> bool:
    """Write ``values`` if the event is still held by the take that made ``attempts``."""
    done = session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.status == "processing",
            WebhookEvent.attempts == attempts,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def settle_event(session: Session, event_id: str, attempts: int, result: Mapping[str, Any]) -> bool:
    """The held event is ``processed`` with ``result``; False when it was taken from us."""
    return _fenced(
        session, event_id, attempts,
        status="processed", result=dict(result), error=None, processed_at=utcnow(),
    )  # fmt: skip


def release_event(
    session: Session, event_id: str, attempts: int, *, error: str, held: Mapping[str, Any]
) -> bool:
    """The held event goes back to ``received`` for a retry (``held``: its result meanwhile,
    the failed attempts counted); its ``enqueued_at`` says a task is on its way, so the sweep
    leaves it to that task."""
    return _fenced(
        session, event_id, attempts,
        status="received", error=error, result=dict(held), enqueued_at=utcnow(),
    )  # fmt: skip


def fail_event(
    session: Session, event_id: str, attempts: int, *, error: str, held: Mapping[str, Any]
) -> bool:
    """The held event is ``failed`` with ``error``; its result says which task gave up."""
    return _fenced(
        session, event_id, attempts,
        status="failed", error=error, result=dict(held), processed_at=utcnow(),
    )  # fmt: skip


def reopen_event(
    session: Session, event_id: str, *, stale_after: float, now: datetime | None = None
) -> WebhookEvent:
    """Make a stored event ``received`` again for ``webhooks replay``, its replay counted.

    Raises:
        NotFoundError: no event has that id.
        UsageError: the event is being processed now (replay it once that is done).
    """
    now = now or utcnow()
    event = session.get(WebhookEvent, event_id) if event_id else None
    if event is None:
        raise NotFoundError(f"no webhook event {event_id!r}; `webhooks list` shows them.")
    held = dict(event.result or {})
    taken_at = _stamp(held.get("taken_at"))
    if (
        event.status == "processing"
        and taken_at is not None
        and (now - taken_at).total_seconds() < stale_after
    ):
        raise UsageError(
            f"webhook event {event.id} is being processed now; replay it once it is processed."
        )
    reopened = session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event.id,
            WebhookEvent.status == event.status,
            WebhookEvent.attempts == event.attempts,
        )
        .values(
            status="received",
            error=None,
            processed_at=None,
            enqueued_at=now,
            result={"replay": _count(held.get("replay")) + 1},
        )
        .execution_options(synchronize_session=False)
    )
    if reopened.rowcount != 1:  # type: ignore[attr-defined]
        raise UsageError(f"webhook event {event.id} changed while it was reopened; try again.")
    session.refresh(event)
    return event
