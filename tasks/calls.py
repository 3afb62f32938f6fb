"""``integrations.call``: one action on one connection, resilient to what providers do.

The order of a call, each step able to end it:

1. Check the kwargs, look the connection and the action up and validate the params, once:
   anything malformed fails at once, with a dead letter and no retry.
2. Claim the idempotency key (CONTRACT.md): a repeat returns the stored outcome, waits for a twin
   in flight, or is refused for different params.
3. Send it as one guarded request (:mod:`tasks.request`): token, breaker, budget, journal, send,
   judge, learn, re-authenticate, retry decision. "Not now" and "try again" send the call back
   to the queue with that wait as its countdown (or park it in the store when the wait is longer
   than a countdown may safely be); a wait for the breaker or the budget uses no attempt.
4. Settle: a success in one round trip (breaker, idempotency record, journal); giving up writes
   a dead letter and fails the task with the same sentence.

Look before resend: a request that may have taken effect (its worker was lost mid-request, or
its answer was lost) at a provider taking no idempotency key is never sent again blindly. When
the connector can look for what it made (:mod:`connectors.looking`), the call looks, on an
admission of its own (breaker and budget; the look is an attempt, within the retry policy):
found, the call succeeds with what was found (``"found": true``) and its idempotency record is
settled; absent, the request is sent; unknown, the call ends as ``outcome_unknown``. Without a
look, it ends as ``outcome_unknown`` at once.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from celery import shared_task
from celery.exceptions import Ignore

from spark_integrations import logs, metrics
from spark_integrations.connectors import Connector
from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Answer
from spark_integrations.connectors.looking import LOOK_MARGIN, Look
from spark_integrations.constants import (
    QUEUE_CALLS,
    RATE_BUDGET_HORIZON,
    REDIS_BUDGET_DEFERRALS,
    TASK_CALL,
)
from spark_integrations.coordination import params_fingerprint
from spark_integrations.errors import (
    CallFailedError,
    CoordinationError,
    IntegrationError,
    RetriableError,
    StoreError,
    UsageError,
)
from spark_integrations.tasks.base import FleetTask, record_failure
from spark_integrations.tasks.clients import Target, coordination, target_for
from spark_integrations.tasks.context import coordination_redis, current_settings
from spark_integrations.tasks.journal import CallJournal
from spark_integrations.tasks.kwargs import check_id, check_idempotency_key, forward_key
from spark_integrations.tasks.parking import park
from spark_integrations.tasks.request import (
    STORE_RETRY,
    Defer,
    Doubt,
    GiveUp,
    GuardedRequest,
    Retry,
)

__all__ = ["call"]

log = logging.getLogger(__name__)

# How long a repeat waits between looks at an idempotent twin still in flight.
TWIN_POLL = 0.5


class _Call:
    """One execution of ``integrations.call`` (one delivery of one message)."""

    def __init__(self, task: FleetTask, kwargs: dict[str, Any]) -> None:
        self.task = task
        self.kwargs = kwargs
        self.task_id: str = task.request.id or ""
        self.max_countdown = current_settings().visibility_timeout * 0.5
        self.journal: CallJournal | None = None
        self.retry_window = 0.0
        self.settle = "release"  # what giving up does to a claimed idempotency record
        # The metrics labels, once the connection and the action are known to the fleet.
        self.connector, self.action = "unknown", "unknown"

    def counted(self, outcome: str) -> None:
        metrics.count("calls", connector=self.connector, action=self.action, outcome=outcome)

    # -- ending ---------------------------------------------------------------------------

    def give_up(self, error: str) -> NoReturn:
        """Dead-letter the call and fail the task; settle its idempotency record first."""
        journal = self.journal
        attempts = 0
        if journal is not None:
            attempts = journal.attempts
            if journal.record is not None:
                if self.settle == "fail":
                    journal.idempotency.fail(journal.record, self.task_id, error)
                else:
                    journal.idempotency.release(journal.record, self.task_id)
            journal.forget()
        self.counted("outcome_unknown" if self.settle == "fail" else "failed")
        record_failure(
            task=TASK_CALL, task_id=self.task_id or None, kwargs=self.kwargs, error=error,
            attempts=attempts,
        )  # fmt: skip
        raise CallFailedError(error)

    def defer(self, wait: float, reason: str) -> NoReturn:
        """Send the call back to wait: a countdown, or the store when it is too long for one."""
        wait = max(0.0, wait)
        if reason == "rate budget":
            # Counted fleet-wide: each is a call that waited instead of meeting a 429.
            coordination_redis().incr(REDIS_BUDGET_DEFERRALS)
        if wait <= self.max_countdown:
            raise self.task.retry(countdown=wait, max_retries=None)
        park(
            task_id=self.task_id,
            task=TASK_CALL,
            queue=QUEUE_CALLS,
            kwargs=self.kwargs,
            wait=wait,
            reason=reason,
        )
        raise Ignore()

    # -- steps ----------------------------------------------------------------------------

    def check(self) -> tuple[Target, Action, dict[str, Any]]:
        """The connection, the action and the params, each looked up and checked once."""
        kw = self.kwargs
        # Malformed kwargs fail here, before any store lookup, budget or breaker (tasks.kwargs).
        check_id("connection_id", kw["connection_id"])
        check_id("action", kw["action"])
        check_idempotency_key(kw["idempotency_key"])
        target = target_for(kw["connection_id"])
        self.connector = target.connector.name
        info = target.info
        if info.status != "active":
            reason = f" ({info.status_reason})" if info.status_reason else ""
            raise UsageError(
                f"connection {info.id} is {info.status}{reason}; calls need an active connection."
            )
        action = target.connector.get_action(kw["action"])
        self.action = action.name
        return target, action, action.validate(kw["params"])

    def claim(self, journal: CallJournal, params: dict[str, Any]) -> dict[str, Any] | None:
        """Claim the idempotency key; a stored outcome is returned, a twin in flight waited for."""
        key = self.kwargs["idempotency_key"]
        if key is None:
            return None
        store = journal.idempotency
        record = store.record_key(self.kwargs["connection_id"], self.kwargs["action"], key)
        found = store.claim(record, params_fingerprint(params), self.task_id)
        if found.kind in ("new", "mine"):
            journal.record = record
            return None
        if found.kind == "conflict":
            self.give_up(f"idempotency key {key!r} was used before with different params.")
        if found.kind == "failed":
            self.give_up(f"an earlier call with idempotency key {key!r} failed: {found.outcome}")
        if found.kind == "done":
            stored = dict(found.outcome)
            return {"ok": True, "data": stored.get("data"), "attempts": 0, "replayed": True}
        journal.start_clock()
        waited = journal.elapsed()
        if waited > self.retry_window:
            self.give_up(
                f"a call with idempotency key {key!r} was still in flight after {waited:.0f} s."
            )
        self.defer(TWIN_POLL, "idempotent twin in flight")

    def run(self) -> dict[str, Any]:
        try:
            target, action, params = self.check()
        except (StoreError, CoordinationError):
            # The store or Redis is down: nothing is wrong with the call. Try again shortly;
            # nothing is lost and no attempt is used.
            self.defer(STORE_RETRY, "store unreachable")
        except IntegrationError as exc:
            self.give_up(str(exc))
        connector = target.connector
        logs.add(connector=connector.name)
        self.retry_window = target.client.call_policy.retry_window
        _, idempotency = coordination()
        resend_safe = connector.resend_safe(action)
        journal = self.journal = CallJournal(
            self.task,
            self.kwargs,
            connector=connector.name,
            resend_safe=resend_safe,
            idempotency=idempotency,
            record=None,
            lookable=not resend_safe and target.client.lookable(action),
        )
        replay = self.claim(journal, params)
        if replay is not None:
            self.counted("replayed")
            return replay
        on_doubt = journal.doubt if journal.lookable else None
        guarded = GuardedRequest(
            target, self.task_id, journal, horizon=self.horizon(), on_doubt=on_doubt
        )
        try:
            result = self.send(guarded, journal, action, params)
        except Defer as wait:
            self.defer(wait.wait, wait.reason)
        except Retry as again:
            self.defer(again.wait, "retry")
        except GiveUp as end:
            self.settle = "fail" if end.unknown else "release"
            self.give_up(end.error)
        guarded.succeeded(result, now=True)
        self.counted("succeeded")
        return result

    def send(
        self, guarded: GuardedRequest, journal: CallJournal, action: Action, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Send the request; when an earlier one is in doubt, look for it first (found: its
        result; absent: send)."""
        forwarded = forward_key(self.kwargs["idempotency_key"], self.task_id)

        def perform(client: Connector) -> Answer[Any]:
            return client.perform_action(action, params, idempotency_key=forwarded)

        try:
            answer = guarded.send(action, perform)
        except Doubt:
            found = self.look(guarded, journal, action, params)
            if found.outcome == "found":
                return {"ok": True, "data": found.data, "attempts": journal.attempts, "found": True}
            name = guarded.target.connector.name
            if found.outcome != "absent":
                raise GiveUp(
                    f"outcome_unknown: an earlier request may have reached {name} without its "
                    f"answer coming back; looked in {found.detail or 'nothing'} and could not "
                    f"tell whether it took effect, and {name} takes no idempotency key, so it "
                    "is not sent again.",
                    unknown=True,
                ) from None
            journal.absent()
            answer = guarded.send(action, perform)
        return {"ok": True, "data": answer.value, "attempts": journal.attempts}

    def look(
        self, guarded: GuardedRequest, journal: CallJournal, action: Action, params: dict[str, Any]
    ) -> Look:
        """The connector's look, on the admission :class:`Doubt` came with. A retriable failure
        is retried within the call's retry policy, the doubt kept; any other is ``unknown``."""
        client = guarded.target.client
        name = guarded.target.connector.name
        try:
            found = client.look(action, params, journal.first_at - LOOK_MARGIN)
        except RetriableError as exc:
            raise guarded.retry_decision(
                exc,
                unknown=(
                    f"An earlier request may have taken effect, looking for it at {name} "
                    f"failed, and {name} takes no idempotency key, so it is not sent again"
                ),
            ) from None
        except Exception as exc:  # a look must not raise: a connector's bug ends as unknown
            log.warning("%s's look for %s raised %s", name, action.name, type(exc).__name__)
            found = Look("unknown", detail=f"{name}'s data (the look failed)")
        if found.outcome != "found":  # found: the success settles the breaker
            guarded.breaker().record_success(guarded.breaker_keys, guarded.token)
        return found

    def horizon(self) -> float:
        """How far ahead budget slots are planned: never beyond a safe countdown."""
        return min(RATE_BUDGET_HORIZON, self.max_countdown * 0.5)


@shared_task(name=TASK_CALL, base=FleetTask, bind=True, max_retries=None, counts_own_delivery=True)
def call(
    self: FleetTask,
    connection_id: Any = None,
    action: Any = None,
    params: Any = None,
    idempotency_key: Any = None,
    **unknown: Any,
) -> dict[str, Any]:
    """Run one action on one connection (CONTRACT.md); see the module docstring."""
    kwargs = {
        "connection_id": connection_id,
        "action": action,
        "params": {} if params is None else params,
        "idempotency_key": idempotency_key,
    }
    run = _Call(self, kwargs)
    if unknown:
        run.give_up(
            f"integrations.call takes no argument {sorted(unknown)[0]!r}; it takes "
            "connection_id, action, params and idempotency_key."
        )
    return run.run()
