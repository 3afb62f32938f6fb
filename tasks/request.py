"""One guarded request to a provider on behalf of the fleet: calls and sync pages alike.

The one place that decides, around one request, everything the fleet adds to HTTP. In order,
each step able to end the request:

1. **Token.** An OAuth connection holds a token fit to send before anything else: a refresh that
   fails ends or defers here, never mistaken for the provider API's answer; it gives up once
   the retry window is spent, by the ledger's clock (:meth:`Ledger.start_clock`), which runs
   across the request's deliveries.
2. **Admission**, one Redis round trip: what the ledger adds (a call's delivery count and
   journal), the circuit breaker (connector and connection) and the rate budgets the connector
   chose for this request (:meth:`Connector.budgets`). "Not now" is :class:`Defer`.
3. **Send**: the connector builds, sends, judges and reads the request, in one call.
4. **Learn**: rate-limit headers tighten or relax the budget they speak for; a 429 pauses it.
5. **Decide**: a success is settled (a call's in one round trip: breaker, idempotency record,
   journal); a 401 re-authenticates once (credentials changed in the store, or a renewed
   token) and sends again; a retriable failure is :class:`Retry` within the retry policy (the
   provider's ``Retry-After`` beats backoff), or :class:`GiveUp` when it is spent or the
   request may have taken effect and cannot be sent again; anything else is :class:`GiveUp`.

The caller turns these decisions into waiting its own way: a call goes back to the queue with a
countdown, a sync run pauses inline or hands off. What differs between them (a call's journal in
Redis, a run's failure count kept across its tasks) is a :class:`Ledger`; both, and the
decisions, live in :mod:`tasks.decisions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import requests

from spark_integrations import metrics
from spark_integrations.connectors import Connector
from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Answer, Budget
from spark_integrations.connectors.streams import Stream
from spark_integrations.coordination import Bucket
from spark_integrations.coordination.client import ScriptsReloadedError
from spark_integrations.errors import (
    AuthenticationError,
    CoordinationError,
    IntegrationError,
    NeedsReauthError,
    ProviderError,
    RateLimitedError,
    RetriableError,
    StoreError,
)
from spark_integrations.tasks.clients import (
    LEARNED,
    Target,
    breaker_for,
    coordination,
    target_for,
)
from spark_integrations.tasks.context import coordination_redis
from spark_integrations.tasks.decisions import Defer, Doubt, GiveUp, Ledger, Retry
from spark_integrations.tasks.retrypolicy import RetryBudget, retry_wait

__all__ = ["Defer", "Doubt", "GiveUp", "GuardedRequest", "Ledger", "Retry"]

_V = TypeVar("_V")
#: The longest an answer pauses a budget, a spent window's reset or a 429's wait (GitHub's
#: primary limit resets within the hour): a provider's wait further off is not believed beyond
#: it, so a bogus header or body cannot stall a connection for days.
MAX_SPENT_PAUSE = 3600.0

#: Seconds before a request asks again after the store or Redis failed.
STORE_RETRY = 5.0


class GuardedRequest:
    """Requests of one task execution to one connection, through every guard of the fleet.

    Args:
        target: the connection's client (re-read and rebuilt after a 401 when it changed).
        token: names this execution to the breaker (its probe) and the journal: the task id.
        ledger: where attempts are counted.
        horizon: how far ahead a budget slot may be planned (a countdown, or an inline wait).
        on_doubt: set when a request whose answer was lost can be looked for at the provider
            (:mod:`connectors.looking`): called (no I/O) so the ledger keeps the request's
            in-flight mark, and the request is retried instead of given up, to be looked for
            by the next delivery. ``None``: such a request ends as ``outcome_unknown``.
    """

    def __init__(
        self,
        target: Target,
        token: str,
        ledger: Ledger,
        *,
        horizon: float,
        on_doubt: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.token = token
        self.ledger = ledger
        self.horizon = horizon
        self.on_doubt = on_doubt
        self.budget, _ = coordination()
        #: A page's breaker success rides on the next admission's round trip.
        self.pending_success: list[str] | None = None
        #: The action or stream of the request in hand (a metrics label).
        self.operation = ""

    # -- the keys -------------------------------------------------------------------------------

    @property
    def breaker_keys(self) -> list[str]:
        name = self.target.connector.name
        return [name, f"{name}:{self.target.info.id}"]

    def breaker(self) -> Any:
        policy = self.target.client.call_policy
        return breaker_for(policy.breaker_fail_max, policy.breaker_reset_timeout)

    # -- one request ----------------------------------------------------------------------------

    def send(
        self, operation: Action | Stream, perform: Callable[[Connector], Answer[_V]]
    ) -> Answer[_V]:
        """Send one request (``perform`` on the connection's client) through every guard.

        Raises:
            Defer: not now (breaker open, budget spent, token refresh pending, store down).
            Retry: it failed; try again after the wait.
            GiveUp: it ends here.
            Doubt: an earlier request may have taken effect and the ledger says it can be
                looked for: nothing was sent, and the admission (breaker, budget) is the look's.
        """
        self.operation = operation.name
        self.ready_token()
        budgets = self.target.client.budgets(operation)
        self.admit(budgets)
        reauthenticated = False
        while True:
            metrics.count(
                "attempts", connector=self.target.connector.name, operation=operation.name
            )
            try:
                answer = perform(self.target.client)
            except AuthenticationError as exc:
                self.ledger.answered()
                self.breaker().record_success(self.breaker_keys, self.token)
                if isinstance(exc, NeedsReauthError) or reauthenticated:
                    raise GiveUp(str(exc)) from None
                if not self.reauthenticate():
                    raise GiveUp(str(exc)) from None
                reauthenticated = True
                self.ledger.resend()
                continue
            except RetriableError as exc:
                if isinstance(exc, RateLimitedError):
                    metrics.count(
                        "rate_limited",
                        connector=self.target.connector.name,
                        connection_id=self.target.info.id,
                    )
                self.learn(
                    budgets,
                    exc.response,
                    pause=isinstance(exc, RateLimitedError),
                    exc=exc,
                    operation=operation,
                )
                raise self.after_retriable(exc) from None
            except ProviderError as exc:
                self.ledger.answered()
                self.breaker().record_success(self.breaker_keys, self.token)
                raise GiveUp(str(exc)) from None
            self.learn(budgets, answer.response, operation=operation)
            return answer

    def succeeded(self, result: Any, *, now: bool) -> None:
        """Settle a success: at once (a call: one round trip with the ledger's settlement), or
        with the next admission (a page: its breaker success rides along)."""
        if not now:
            self.pending_success = self.breaker_keys
            self.ledger.settled_without_pipeline(result)
            return
        breaker = self.breaker()
        pipe = coordination_redis().pipeline(transaction=False)
        closed = breaker.record_success_later(pipe, self.breaker_keys, self.token)
        self.ledger.queue_success(pipe, result)
        try:
            closed(pipe.execute()[0])
        except ScriptsReloadedError:
            breaker.record_success(self.breaker_keys, self.token)
            self.ledger.settled_without_pipeline(result)

    def flush(self) -> None:
        """Send a breaker success still waiting for an admission (the end of a share of a run)."""
        if self.pending_success is not None:
            keys, self.pending_success = self.pending_success, None
            self.breaker().record_success(keys, self.token)

    # -- the steps ------------------------------------------------------------------------------

    def ready_token(self) -> None:
        """Have a token fit to send in hand before the request leaves, or end or defer here."""
        tokens = self.target.tokens
        if tokens is None:
            return
        try:
            tokens.current()
        except (StoreError, CoordinationError):
            raise Defer(STORE_RETRY, "store unreachable") from None
        except RetriableError as exc:
            policy = self.target.client.call_policy
            try:
                self.ledger.start_clock()
            except CoordinationError:
                raise Defer(STORE_RETRY, "coordination Redis unreachable") from None
            if self.ledger.elapsed() > policy.retry_window:
                raise GiveUp(f"gave up waiting for a usable OAuth token: {exc}") from None
            raise Defer(max(1.0, exc.retry_after or 0.0), "token refresh") from None
        except IntegrationError as exc:
            raise GiveUp(str(exc)) from None

    def admit(self, budgets: tuple[Budget, ...]) -> None:
        """The ledger, the breaker and the budget in one round trip; :class:`Defer` if not now."""
        breaker = self.breaker()
        pipe = coordination_redis().pipeline(transaction=False)
        closed = None
        if self.pending_success is not None:
            closed = breaker.record_success_later(pipe, self.pending_success, self.token)
        queued = self.ledger.queue_admission(pipe)
        admitted = breaker.admit_later(pipe, self.breaker_keys, self.token)
        buckets = [Bucket(b.key, b.rate, b.burst) for b in budgets]
        granted = self.budget.acquire_later(pipe, buckets, horizon=self.horizon)
        try:
            replies = pipe.execute()
        except CoordinationError as exc:
            self.ledger_undo()
            if isinstance(exc, ScriptsReloadedError):
                raise Defer(0.05, "coordination scripts reloaded") from None
            raise Defer(STORE_RETRY, "coordination Redis unreachable") from None
        if closed is not None:
            closed(replies[0])
            replies, self.pending_success = replies[1:], None
        admission, grant = admitted(replies[queued]), granted(replies[queued + 1])
        doubt: Doubt | None = None
        try:
            self.ledger.read_admission(replies[:queued])
        except GiveUp:
            if admission.probe:
                breaker.release(self.breaker_keys, self.token)
            raise
        except Doubt as exc:
            doubt = exc  # the look goes on this admission, or waits for the next one
        if admission.allowed and grant.allowed:
            for bucket in buckets:
                metrics.count("budget_grants", bucket=bucket.key)
                metrics.gauge("budget_rate", bucket.rate, bucket=bucket.key)
            if doubt is not None:
                raise doubt
            return
        self.ledger_undo()
        connector, connection_id = self.target.connector.name, self.target.info.id
        reason = "circuit" if not admission.allowed else "rate_budget"
        metrics.count("deferrals", connector=connector, connection_id=connection_id, reason=reason)
        if not admission.allowed:
            raise Defer(admission.wait, f"circuit {admission.state}")
        if admission.probe:
            breaker.release(self.breaker_keys, self.token)
        if grant.reserved:
            raise Defer(grant.wait + 0.003, "rate budget")
        # The next slot lies beyond the horizon: ask again when it may be within reach.
        raise Defer(max(1.0, grant.wait - self.horizon), "rate budget")

    def ledger_undo(self) -> None:
        # Redis may be down: then the journal's marks expire with it.
        with contextlib.suppress(CoordinationError):
            self.ledger.undo_admission()

    def learn(
        self,
        budgets: tuple[Budget, ...],
        response: requests.Response | None,
        *,
        pause: bool = False,
        exc: RetriableError | None = None,
        operation: Action | Stream | None = None,
    ) -> None:
        """Tighten or relax the budget the headers speak for; a 429 pauses it, and so does an
        answer saying the provider's window is spent (``remaining`` 0 with a known reset): the
        fleet then waits for the reset instead of earning a 429 (GitHub's primary limit,
        Discord's buckets). Headers are read under the connector's names
        (:meth:`Connector.rate_limit_hint`).

        A route tier's budget keyed on the provider's bucket is learned under the route's own
        name too (``operation``'s): a process of the fleet that has not met the bucket yet
        still draws from that name, and must wait as well."""
        if response is None:
            return
        budget = self.target.client.learning_budget(budgets, response)
        if budget is None:
            return
        keys = [budget.key]
        prefix, route, bucket = budget.key.rpartition(":route:")
        if route and operation is not None and bucket != operation.name:
            keys.append(f"{prefix}:route:{operation.name}")
        if pause and exc is not None:
            # The provider is up; the fleet asked too fast. Pause the budget, not the breaker.
            for key in keys:
                self.budget.learn(key, pause=min(exc.retry_after or 1.0, MAX_SPENT_PAUSE))
            return
        hint = self.target.client.rate_limit_hint(response)
        spent = hint.remaining is not None and hint.remaining <= 0
        if spent and hint.reset_in and self.target.connector.pause_when_spent:
            for key in keys:
                self.budget.learn(key, pause=min(hint.reset_in, MAX_SPENT_PAUSE))
        window = self.target.connector.rate_limit_window
        if window is None:
            return
        if hint.limit is None or hint.limit <= 0:
            return
        rate = hint.limit / window
        for key in keys:
            if not LEARNED.recently(key, rate):
                self.budget.learn(key, rate=rate, ttl=LEARNED.ttl)

    def after_retriable(self, exc: RetriableError) -> Exception:
        """The decision after a retriable failure: :class:`Retry` or :class:`GiveUp`."""
        doubtful = exc.maybe_applied and not self.ledger.resend_safe
        unkeyed = (
            f"The request may have taken effect and {self.target.connector.name} takes no "
            "idempotency key, so it is not sent again"
        )
        if doubtful and self.on_doubt is None:
            self.ledger.failed()
            self.breaker().record_failure(self.breaker_keys, self.token)
            return GiveUp(f"outcome_unknown: {exc} {unkeyed}.", unknown=True)
        if doubtful and self.on_doubt is not None:
            self.on_doubt()  # the in-flight mark stays: the next delivery looks first
            return self.retry_decision(exc, unknown=f"{unkeyed} before it is looked for")
        return self.retry_decision(exc)

    def retry_decision(self, exc: RetriableError, *, unknown: str | None = None) -> Exception:
        """Count a failed attempt and decide: :class:`Retry` after the policy's wait, or
        :class:`GiveUp` once the policy is spent (``outcome_unknown``, saying ``unknown``,
        when the request may have taken effect)."""
        breaker = self.breaker()
        attempts, elapsed, failures = self.ledger.failed()
        if isinstance(exc, RateLimitedError):
            breaker.record_success(self.breaker_keys, self.token)
        else:
            breaker.record_failure(self.breaker_keys, self.token)
        wait = retry_wait(failures, exc.retry_after)
        policy = self.target.client.call_policy
        if not RetryBudget(policy.retry_attempts, policy.retry_window).allows(
            attempts, elapsed, wait
        ):
            spent = (
                f"gave up after {attempts} attempts in {elapsed:.0f} s, the retry budget "
                f"({policy.retry_attempts} attempts, {policy.retry_window:.0f} s): {exc}"
            )
            if unknown is not None:
                return GiveUp(f"outcome_unknown: {spent} {unknown}.", unknown=True)
            return GiveUp(spent)
        metrics.count("retries", connector=self.target.connector.name, operation=self.operation)
        return Retry(wait, exc)

    def reauthenticate(self) -> bool:
        """After a 401, once: credentials changed in the store since this worker read them (a
        ``connections update`` within the cache's lifetime), else a renewed OAuth token (or a
        signer's); False when there is nothing new to try."""
        current = self.target
        try:
            fresh = target_for(current.info.id, fresh=True)
        except IntegrationError:
            fresh = current  # the store cannot say more now: try what there is
        if fresh is not current:
            if fresh.info.status != "active":
                raise GiveUp(
                    f"connection {fresh.info.id} is {fresh.info.status}; it must be active."
                )
            self.target = fresh
            self.ready_token()
            return True
        if not current.client.reauthenticate():
            return False
        self.ready_token()
        return True
