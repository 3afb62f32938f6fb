"""The journal of one ``integrations.call`` in Redis: its attempts, and a request in flight.

A call's attempts outlive its worker: the journal (a hash per task id) counts the requests sent
and the failures, keeps the retry window's clock (``first_at``) and marks a request in flight
while it is out, so a later delivery of a call whose worker was lost mid-request knows the
request may have reached the provider. It is the call's :class:`tasks.request.Ledger`: its
commands ride on the guarded request's admission and settlement round trips.

A request in doubt (in flight from a lost worker, or whose answer was lost) is never sent
again blindly: the call gives up as ``outcome_unknown``, or, when the connector can look in
the provider's data for what the request made (:mod:`connectors.looking`), the admission
raises :class:`tasks.request.Doubt` and the call looks first. The in-flight mark stays set
until the doubt is settled (found, absent, or given up), so a worker lost during the look
leaves the next delivery in the same doubt.
"""

from __future__ import annotations

import time
from typing import Any

from spark_integrations.constants import REDIS_CALL_JOURNAL_PREFIX
from spark_integrations.coordination import IdempotencyStore
from spark_integrations.tasks.base import FleetTask, delivery_key
from spark_integrations.tasks.context import coordination_redis, current_settings
from spark_integrations.tasks.request import Doubt, GiveUp

__all__ = ["CallJournal"]

# Commands queue_admission puts on the admission pipeline, and those of the delivery count
# (a delivery's first admission only).
_ADMISSION_COMMANDS = 5
_DELIVERY_COMMANDS = 2


class CallJournal:
    """The attempts of one call (one task id), kept in Redis across its deliveries."""

    def __init__(
        self,
        task: FleetTask,
        kwargs: dict[str, Any],
        *,
        connector: str,
        resend_safe: bool,
        idempotency: IdempotencyStore,
        record: str | None,
        lookable: bool = False,
    ) -> None:
        self.task = task
        self.kwargs = kwargs
        self.task_id: str = task.request.id or ""
        self.key = f"{REDIS_CALL_JOURNAL_PREFIX}{self.task_id}"
        self.connector = connector
        self.resend_safe = resend_safe
        self.idempotency = idempotency
        self.record = record
        self.attempts = 0
        self.first_at = time.time()
        #: The connector can look for what a request in doubt made (instead of giving up).
        self.lookable = lookable
        #: An earlier request of this call may have taken effect: its in-flight mark is kept.
        self.in_doubt = False
        #: This execution looked and found no trace: the in-flight mark is its own.
        self.looked = False
        self._delivery_counted = False

    def ttl(self) -> int:
        return int(current_settings().visibility_timeout * 2 + 3600)

    # -- the Ledger ---------------------------------------------------------------------------

    def queue_admission(self, pipe: Any) -> int:
        # The delivery count (poison messages) rides on the delivery's first admission, before
        # anything is sent to a provider: checks and store reads do not kill workers, requests
        # and answers might. (A look that found nothing admits the request once more.)
        counted = 0
        if not self._delivery_counted:
            self.task.count_delivery(pipe)
            counted = _DELIVERY_COMMANDS
        pipe.hgetall(self.key)
        pipe.hsetnx(self.key, "first_at", repr(time.time()))
        pipe.hincrby(self.key, "attempts", 1)
        pipe.hset(self.key, "inflight", "1")
        pipe.expire(self.key, self.ttl())
        return counted + _ADMISSION_COMMANDS

    def read_admission(self, replies: list[Any]) -> None:
        if not self._delivery_counted:
            # A message that killed its worker too often ends here, before anything is sent.
            self._delivery_counted = True
            self.task.check_delivery(int(replies[0]), self.kwargs)
            replies = replies[_DELIVERY_COMMANDS:]
        journal: dict[str, str] = replies[0]
        self.first_at = float(journal.get("first_at") or time.time())
        self.attempts = int(replies[2])
        if journal.get("inflight") != "1" or self.resend_safe or self.looked:
            return
        if self.lookable:
            # The look is this attempt: the mark stays until the doubt is settled.
            self.in_doubt = True
            raise Doubt("an earlier request may have taken effect")
        self.attempts -= 1
        raise GiveUp(
            "outcome_unknown: an earlier delivery sent the request and its worker was lost "
            f"before the answer; {self.connector} takes no idempotency key, so it is not "
            "sent again.",
            unknown=True,
        )

    def undo_admission(self) -> None:
        undo = coordination_redis().pipeline(transaction=False)
        undo.hincrby(self.key, "attempts", -1)
        undo.hset(self.key, "inflight", "1" if self.in_doubt else "0")
        self.attempts = int(undo.execute()[0])

    def resend(self) -> None:
        pipe = coordination_redis().pipeline(transaction=False)
        pipe.hincrby(self.key, "attempts", 1)
        pipe.hset(self.key, "inflight", "1")
        pipe.expire(self.key, self.ttl())
        self.attempts = int(pipe.execute()[0])

    def answered(self) -> None:
        self._end(failed=False)

    def failed(self) -> tuple[int, float, int]:
        failures = self._end(failed=True)
        return self.attempts, self.elapsed(), failures

    def start_clock(self) -> None:
        """Start (or read) the retry window's clock of this call, kept in its journal across
        deliveries (a wait for a token, or for an idempotent twin, uses it)."""
        pipe = coordination_redis().pipeline(transaction=False)
        pipe.hsetnx(self.key, "first_at", repr(time.time()))
        pipe.hget(self.key, "first_at")
        pipe.expire(self.key, self.ttl())
        self.first_at = float(pipe.execute()[1])

    def elapsed(self) -> float:
        return max(0.0, time.time() - self.first_at)

    def queue_success(self, pipe: Any, result: Any) -> None:
        if self.record is not None:
            self.idempotency.succeed(self.record, self.task_id, result, pipe=pipe)
        pipe.delete(self.key)
        pipe.delete(delivery_key(self.task_id, self.task.request.retries or 0))
        self.task.request.delivery_count_cleared = True

    def settled_without_pipeline(self, result: Any) -> None:
        if self.record is not None:
            self.idempotency.succeed(self.record, self.task_id, result)
        coordination_redis().delete(self.key)

    # -- outside a request --------------------------------------------------------------------

    def forget(self) -> None:
        """The call is over: its journal goes."""
        coordination_redis().delete(self.key)

    def doubt(self) -> None:
        """A request's answer was lost and the connector can look for it: keep the in-flight
        mark when the failure is counted, so the next delivery looks before sending."""
        self.in_doubt = True

    def absent(self) -> None:
        """A look found no trace of the earlier request: the next admission may send it (the
        in-flight mark it meets is this execution's own)."""
        self.in_doubt = False
        self.looked = True

    def _end(self, *, failed: bool) -> int:
        """The answer (or its absence) is known: clear the in-flight mark, unless the request
        is in doubt; count a failure."""
        pipe = coordination_redis().pipeline(transaction=False)
        pipe.hset(self.key, "inflight", "1" if self.in_doubt else "0")
        pipe.hincrby(self.key, "failures", 1 if failed else 0)
        return int(pipe.execute()[1])
