"""``integrations.call``: one action on one connection, resilient to what providers do.

The order of a call, each step able to end it:

1. Check the kwargs and look the connection and action up: anything malformed fails at once,
   with a dead letter and no retry.
2. Claim the idempotency key (CONTRACT.md): a repeat returns the stored outcome, waits for a twin
   in flight, or is refused for different params.
3. Ask the circuit breaker, then the fleet-wide rate budget. Either may say "not now": the call
   goes back to the queue with that wait as its countdown (or is parked in the store when the
   wait is longer than a countdown may safely be), and no retry attempt is used.
4. Send, with the call's journal in Redis marking the request in flight, so a worker killed
   mid-request leaves evidence: a later delivery re-sends only where the provider honours the
   idempotency key, and otherwise ends as ``outcome_unknown``.
5. Judge the answer: retriable failures retry with backoff and jitter within the connector's
   retry budget (the provider's wait always respected), a 401 re-authenticates once, anything
   else is fatal. Giving up writes a dead letter and fails the task with a clear message.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any, NoReturn

import requests
from celery import shared_task
from celery.exceptions import Ignore

from spark_integrations.connectors import Connector, get_connector
from spark_integrations.connectors.base import CallPolicy
from spark_integrations.connectors.http import rate_limit_hint
from spark_integrations.constants import (
    DEFAULT_IDEMPOTENCY_TTL,
    QUEUE_CALLS,
    RATE_BUDGET_HORIZON,
    REDIS_BUDGET_DEFERRALS,
    REDIS_CALL_JOURNAL_PREFIX,
    TASK_CALL,
)
from spark_integrations.coordination import (
    BreakerPolicy,
    Bucket,
    RedisCircuitBreaker,
    RedisRateBudget,
    load_scripts,
)
from spark_integrations.coordination.client import ScriptsReloadedError
from spark_integrations.coordination.idempotency import IdempotencyStore, params_fingerprint
from spark_integrations.errors import (
    AuthenticationError,
    CallFailedError,
    CoordinationError,
    IntegrationError,
    NeedsReauthError,
    ProviderError,
    RateLimitedError,
    RetriableError,
    StoreError,
    UsageError,
)
from spark_integrations.forks import on_fork
from spark_integrations.tasks.base import FleetTask, delivery_key
from spark_integrations.tasks.context import coordination_redis, current_settings
from spark_integrations.tasks.deadletters import write_dead_letter
from spark_integrations.tasks.kwargs import check_id, check_idempotency_key, forward_key
from spark_integrations.tasks.lookup import ConnectionInfo, load_connection
from spark_integrations.tasks.parking import park
from spark_integrations.tasks.retrypolicy import RetryBudget, retry_wait
from spark_integrations.tasks.tokens import TokenSource

__all__ = ["call"]

# How long a repeat waits between looks at an idempotent twin still in flight.
TWIN_POLL = 0.5
# Seconds before a call looks again for a store that was unreachable.
STORE_RETRY = 5.0
# Learned rate limits are written again at most this often per process when unchanged.
LEARN_EVERY = 20.0


@cache
def _coordination() -> tuple[RedisRateBudget, IdempotencyStore]:
    client = coordination_redis()
    budget = RedisRateBudget(client)
    idempotency = IdempotencyStore(client, DEFAULT_IDEMPOTENCY_TTL)
    load_scripts(client, (*budget.scripts, *idempotency.scripts))
    return budget, idempotency


@cache
def _breaker(fail_max: int, reset_timeout: float) -> RedisCircuitBreaker:
    policy = BreakerPolicy(fail_max=fail_max, reset_timeout=reset_timeout)
    breaker = RedisCircuitBreaker(coordination_redis(), policy)
    load_scripts(coordination_redis(), breaker.scripts)
    return breaker


_learned: dict[str, tuple[float, float]] = {}


@on_fork
def _forget() -> None:
    _coordination.cache_clear()
    _breaker.cache_clear()
    _learned.clear()


class _Call:
    """One execution of ``integrations.call`` (one delivery of one message)."""

    def __init__(self, task: FleetTask, kwargs: dict[str, Any]) -> None:
        self.task = task
        self.kwargs = kwargs
        self.task_id: str = task.request.id or ""
        self.settings = current_settings()
        self.budget, self.idempotency = _coordination()
        self.redis = coordination_redis()
        self.journal_key = f"{REDIS_CALL_JOURNAL_PREFIX}{self.task_id}"
        self.record: str | None = None
        self.attempts = 0
        self.policy: CallPolicy | None = None
        self.first_at = time.time()

    # -- ending ---------------------------------------------------------------------------

    def give_up(self, error: str, *, settle: str = "release") -> NoReturn:
        """Dead-letter the call and fail the task; settle its idempotency record first."""
        if self.record is not None:
            if settle == "fail":
                self.idempotency.fail(self.record, self.task_id, error)
            elif settle == "release":
                self.idempotency.release(self.record, self.task_id)
        write_dead_letter(
            task=TASK_CALL,
            task_id=self.task_id or None,
            kwargs=self.kwargs,
            error=error,
            attempts=self.attempts,
        )
        self.redis.delete(self.journal_key)
        raise CallFailedError(error)

    def defer(self, wait: float, reason: str) -> NoReturn:
        """Send the call back to wait: a countdown, or the store when it is too long for one."""
        wait = max(0.0, wait)
        if reason == "rate budget":
            # Counted fleet-wide: each is a request that waited instead of meeting a 429.
            self.redis.incr(REDIS_BUDGET_DEFERRALS)
        if wait <= self.max_countdown():
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

    def check(self) -> tuple[ConnectionInfo, type[Connector], dict[str, Any]]:
        kw = self.kwargs
        # Malformed kwargs fail here, before any store lookup, budget or breaker (tasks.kwargs).
        check_id("connection_id", kw["connection_id"])
        check_id("action", kw["action"])
        check_idempotency_key(kw["idempotency_key"])
        info = load_connection(kw["connection_id"])
        if info.status != "active":
            reason = f" ({info.status_reason})" if info.status_reason else ""
            raise UsageError(
                f"connection {info.id} is {info.status}{reason}; calls need an active connection."
            )
        connector = get_connector(info.provider)
        params = connector.get_action(kw["action"]).validate(kw["params"])
        return info, connector, params

    def claim(self, connector: type[Connector], params: dict[str, Any]) -> dict[str, Any] | None:
        """Claim the idempotency key; a stored outcome is returned, a twin in flight waited for."""
        key = self.kwargs["idempotency_key"]
        if key is None:
            return None
        self.record = self.idempotency.record_key(
            self.kwargs["connection_id"], self.kwargs["action"], key
        )
        record = self.record
        found = self.idempotency.claim(record, params_fingerprint(params), self.task_id)
        if found.kind in ("new", "mine"):
            return None
        self.record = None  # not ours: never settle it
        if found.kind == "conflict":
            self.give_up(f"idempotency key {key!r} was used before with different params.")
        if found.kind == "failed":
            self.give_up(f"an earlier call with idempotency key {key!r} failed: {found.outcome}")
        if found.kind == "done":
            stored = dict(found.outcome)
            return {"ok": True, "data": stored.get("data"), "attempts": 0, "replayed": True}
        self.read_first_at()
        elapsed = self.elapsed()
        if self.policy is not None and elapsed > self.policy.retry_window:
            self.give_up(
                f"a call with idempotency key {key!r} was still in flight after {elapsed:.0f} s."
            )
        self.defer(TWIN_POLL, "idempotent twin in flight")

    def read_first_at(self) -> None:
        """Start (or read) the retry window's clock of this call, kept in its journal."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(self.journal_key, "first_at", repr(time.time()))
        pipe.hget(self.journal_key, "first_at")
        pipe.expire(self.journal_key, self.journal_ttl())
        self.first_at = float(pipe.execute()[1])

    def elapsed(self) -> float:
        """Seconds since this call's first execution (kept in its journal)."""
        return max(0.0, time.time() - self.first_at)

    def journal_ttl(self) -> int:
        return int(self.settings.visibility_timeout * 2 + 3600)

    def run(self) -> dict[str, Any]:
        try:
            info, connector, params = self.check()
        except (StoreError, CoordinationError):
            # The store or Redis is down: nothing is wrong with the call. Try again shortly;
            # nothing is lost and no attempt is used.
            self.defer(STORE_RETRY, "store unreachable")
        except IntegrationError as exc:
            self.give_up(str(exc))
        self.policy = policy = connector.policy(info.config)
        replay = self.claim(connector, params)
        if replay is not None:
            return replay
        action = connector.get_action(self.kwargs["action"])
        resend_safe = bool(action.idempotent and connector.idempotency_header)
        conn_key = f"{connector.name}:{info.id}"
        breaker_keys = [connector.name, conn_key]
        breaker = _breaker(policy.breaker_fail_max, policy.breaker_reset_timeout)
        buckets = [Bucket(conn_key, policy.rate_limit, policy.rate_limit_burst)]
        if policy.fleet_rate_limit:
            buckets.append(Bucket(connector.name, policy.fleet_rate_limit, policy.rate_limit_burst))
        tokens = self.tokens(info, connector)
        self.admit(breaker, breaker_keys, buckets, connector.name, resend_safe)
        forwarded = forward_key(self.kwargs["idempotency_key"], self.task_id)
        client = connector(
            info.config,
            info.secrets,
            token_source=tokens,
            on_response=lambda response: self.observe(connector, conn_key, response),
        )
        reauthenticated = False
        while True:
            try:
                data = client.run_action(self.kwargs["action"], params, idempotency_key=forwarded)
            except AuthenticationError as exc:
                self.end_attempt(failed=False)
                breaker.record_success(breaker_keys, self.task_id)
                if isinstance(exc, NeedsReauthError):
                    self.give_up(str(exc))
                if not reauthenticated:
                    reauthenticated = True
                    renewed = self.reauthenticate(info, connector, client, tokens)
                    if renewed is not None:
                        client, tokens = renewed
                        self.begin_attempt()
                        continue
                self.give_up(str(exc))
            except RetriableError as exc:
                self.after_retriable(exc, connector, conn_key, breaker, breaker_keys, resend_safe)
            except ProviderError as exc:
                self.end_attempt(failed=False)
                breaker.record_success(breaker_keys, self.task_id)
                self.give_up(str(exc))
            break
        result = {"ok": True, "data": data, "attempts": self.attempts}
        self.settle(breaker, breaker_keys, result)
        return result

    def reauthenticate(
        self,
        info: ConnectionInfo,
        connector: type[Connector],
        client: Connector,
        tokens: TokenSource | None,
    ) -> tuple[Connector, TokenSource | None] | None:
        """After a 401, once: credentials changed in the store since this worker read them (a
        `connections update` within the cache's lifetime), or a renewed OAuth token; None when
        there is nothing new to try."""
        try:
            fresh = load_connection(info.id, fresh=True)
        except IntegrationError:
            fresh = info  # the store cannot say more now: try what there is
        if fresh.secrets != info.secrets or fresh.config != info.config:
            if fresh.status != "active":
                self.give_up(f"connection {info.id} is {fresh.status}; calls need it active.")
            renewed_tokens = self.tokens(fresh, connector)
            renewed = connector(
                fresh.config,
                fresh.secrets,
                token_source=renewed_tokens,
                on_response=client.on_response,
            )
            return renewed, renewed_tokens
        if client.reauthenticate():
            if tokens is not None:
                self.token_ready(tokens)
            return client, tokens
        return None

    def tokens(self, info: ConnectionInfo, connector: type[Connector]) -> TokenSource | None:
        """The connection's OAuth tokens, one fit to send already in hand; None without OAuth.

        A connection that needs re-authorisation ends the call with that reason (no retry); a
        refresh that cannot finish now defers the call without using an attempt.
        """
        if not connector.uses_oauth_tokens(info.secrets):
            return None
        source = TokenSource(info.id, connector, info.config, info.secrets)
        self.token_ready(source)
        return source

    def token_ready(self, source: TokenSource) -> None:
        """Have a token fit to send in hand before the request leaves, or end the call here:
        a refresh's failure is then never mistaken for the provider API's."""
        try:
            source.current()
        except (StoreError, CoordinationError):
            self.defer(STORE_RETRY, "store unreachable")
        except RetriableError as exc:
            self.read_first_at()
            assert self.policy is not None
            if self.elapsed() > self.policy.retry_window:
                self.give_up(f"gave up waiting for a usable OAuth token: {exc}")
            self.defer(max(1.0, exc.retry_after or 0.0), "token refresh")
        except IntegrationError as exc:
            self.give_up(str(exc))

    def settle(
        self, breaker: RedisCircuitBreaker, breaker_keys: list[str], result: dict[str, Any]
    ) -> None:
        """One round trip settles a success: breaker, idempotency record, journal."""
        pipe = self.redis.pipeline(transaction=False)
        breaker.record_success_later(pipe, breaker_keys, self.task_id)
        if self.record is not None:
            self.idempotency.succeed(self.record, self.task_id, result, pipe=pipe)
        pipe.delete(self.journal_key)
        pipe.delete(delivery_key(self.task_id, self.task.request.retries or 0))
        self.task.request.delivery_count_cleared = True
        try:
            pipe.execute()
        except ScriptsReloadedError:
            breaker.record_success(breaker_keys, self.task_id)
            if self.record is not None:
                self.idempotency.succeed(self.record, self.task_id, result)

    def admit(
        self,
        breaker: RedisCircuitBreaker,
        breaker_keys: list[str],
        buckets: list[Bucket],
        connector_name: str,
        resend_safe: bool,
    ) -> None:
        """Read the journal, ask the breaker and the budget, mark the attempt: one round trip.

        When an earlier delivery left a request in flight that cannot be sent again safely,
        the call ends as ``outcome_unknown``. When the breaker or the budget says "not now",
        the attempt mark is undone, a probe given up, and the call deferred; a budget slot
        granted alongside a refusal is left as a gap.
        """
        key = self.journal_key
        pipe = self.redis.pipeline(transaction=False)
        self.task.count_delivery(pipe)
        pipe.hgetall(key)
        admitted = breaker.admit_later(pipe, breaker_keys, self.task_id)
        granted = self.budget.acquire_later(pipe, buckets, horizon=self.horizon())
        pipe.hsetnx(key, "first_at", repr(time.time()))
        pipe.hincrby(key, "attempts", 1)
        pipe.hset(key, "inflight", "1")
        pipe.expire(key, self.journal_ttl())
        try:
            replies = pipe.execute()
        except ScriptsReloadedError:
            self.undo_attempt()
            self.defer(0.05, "coordination scripts reloaded")
        # A message that killed its worker too often ends here, before anything is sent.
        self.task.check_delivery(int(replies[0]), self.kwargs)
        replies = replies[2:]
        journal: dict[str, str] = replies[0]
        admission, grant = admitted(replies[1]), granted(replies[2])
        self.first_at = float(journal.get("first_at") or time.time())
        self.attempts = int(replies[4])
        if journal.get("inflight") == "1" and not resend_safe:
            if admission.probe:
                breaker.release(breaker_keys, self.task_id)
            self.attempts -= 1
            self.give_up(
                "outcome_unknown: an earlier delivery sent the request and its worker was lost "
                f"before the answer; {connector_name} takes no idempotency key, so it is not "
                "sent again.",
                settle="fail",
            )
        if admission.allowed and grant.allowed:
            return
        self.undo_attempt()
        if not admission.allowed:
            self.defer(admission.wait, f"circuit {admission.state}")
        if admission.probe:
            breaker.release(breaker_keys, self.task_id)
        if grant.reserved:
            self.defer(grant.wait + 0.003, "rate budget")
        # The next slot lies beyond the horizon: ask again when it may be within reach.
        self.defer(min(max(1.0, grant.wait - self.horizon()), self.max_countdown()), "rate budget")

    def max_countdown(self) -> float:
        """The longest safe countdown: half the broker's visibility timeout."""
        return self.settings.visibility_timeout * 0.5

    def horizon(self) -> float:
        """How far ahead budget slots are planned: never beyond a safe countdown."""
        return min(RATE_BUDGET_HORIZON, self.max_countdown() * 0.5)

    def undo_attempt(self) -> None:
        """Take back an attempt marked but not sent."""
        undo = self.redis.pipeline(transaction=False)
        undo.hincrby(self.journal_key, "attempts", -1)
        undo.hset(self.journal_key, "inflight", "0")
        self.attempts = int(undo.execute()[0])

    def after_retriable(
        self,
        exc: RetriableError,
        connector: type[Connector],
        conn_key: str,
        breaker: RedisCircuitBreaker,
        breaker_keys: list[str],
        resend_safe: bool,
    ) -> NoReturn:
        """Retry a retriable failure within the budget, or give up."""
        if exc.maybe_applied and not resend_safe:
            self.end_attempt(failed=True)
            breaker.record_failure(breaker_keys, self.task_id)
            self.give_up(
                f"outcome_unknown: {exc} The request may have taken effect and "
                f"{connector.name} takes no idempotency key, so it is not sent again.",
                settle="fail",
            )
        failures = self.end_attempt(failed=True)
        if isinstance(exc, RateLimitedError):
            # The provider is up; the fleet asked too fast. Pause the budget, not the breaker.
            breaker.record_success(breaker_keys, self.task_id)
            self.budget.learn(conn_key, pause=exc.retry_after or 1.0)
        else:
            breaker.record_failure(breaker_keys, self.task_id)
        wait = retry_wait(failures, exc.retry_after)
        policy = self.policy
        assert policy is not None
        budget = RetryBudget(policy.retry_attempts, policy.retry_window)
        if not budget.allows(self.attempts, self.elapsed(), wait):
            self.give_up(
                f"gave up after {self.attempts} attempts within the retry budget "
                f"({policy.retry_attempts} attempts, {policy.retry_window:.0f} s): {exc}"
            )
        self.defer(wait, "retry")

    def begin_attempt(self) -> None:
        """Count a request about to be sent and mark it in flight (survives a lost worker)."""
        pipe = self.redis.pipeline()
        pipe.hincrby(self.journal_key, "attempts", 1)
        pipe.hset(self.journal_key, "inflight", "1")
        pipe.expire(self.journal_key, self.journal_ttl())
        self.attempts = int(pipe.execute()[0])

    def end_attempt(self, *, failed: bool) -> int:
        """The answer (or its absence) is known: clear the in-flight mark; count a failure."""
        pipe = self.redis.pipeline()
        pipe.hset(self.journal_key, "inflight", "0")
        pipe.hincrby(self.journal_key, "failures", 1 if failed else 0)
        return int(pipe.execute()[1])

    def observe(
        self, connector: type[Connector], conn_key: str, response: requests.Response
    ) -> None:
        """Tighten or relax the connection's budget from what the provider's headers say."""
        window = connector.rate_limit_window
        if window is None:
            return
        hint = rate_limit_hint(response.headers)
        if hint.limit is None or hint.limit <= 0:
            return
        rate = hint.limit / window
        now = time.monotonic()
        last = _learned.get(conn_key)
        if last is not None and last[0] == rate and now - last[1] < LEARN_EVERY:
            return
        self.budget.learn(conn_key, rate=rate, ttl=LEARN_EVERY * 3)
        _learned[conn_key] = (rate, now)


# The delivery count (poison messages) rides on the first round trip to Redis, which comes
# before anything is sent to a provider: checks and store reads do not kill workers, requests
# and answers might.
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
