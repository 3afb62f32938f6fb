"""``integrations.sync``: one run of one sync definition, as a chain of short tasks.

A run reads its stream page by page from where the last committed page left off. Each page is
delivered to the destination and committed with the run's position and the sync's cursor in
one transaction (for the record store, the records are in it too), fenced on the run's lease
(:mod:`store.runs`). So a run killed at any point resumes at the page after the last commit:
no gap, and a page read twice is absorbed by the upsert on the primary key.

Each task does a few pages (:data:`PAGES_PER_TASK`, or :data:`TASK_SECONDS` of work), releases
the lease with its last page and replaces itself with a continuation (``Task.replace``, which
keeps the task id: a caller waiting on it gets the run's result). No task comes near the
visibility timeout, and a lost worker costs the pages since its last commit.

Every request goes through the fleet-wide rate budget of the connection, the same one calls
use, so syncs and calls share the provider's limit and a sync never meets a 429 it could have
avoided. Retriable failures are retried with backoff (the provider's wait respected) within the
connection's retry policy; long waits hand the run off with a countdown instead of holding a
worker.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any, NoReturn

from celery import shared_task
from celery.exceptions import Ignore
from kombu.exceptions import KombuError

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.positions import position_loop_error
from spark_integrations.connectors.streams import Page, Stream, since_for
from spark_integrations.constants import QUEUE_BACKFILLS, QUEUE_SYNCS, TASK_SYNC
from spark_integrations.destinations import Batch, Destination, destination_for
from spark_integrations.errors import (
    CoordinationError,
    IntegrationError,
    StoreError,
    SyncFailedError,
    UsageError,
)
from spark_integrations.store import SyncDefinition, SyncRun
from spark_integrations.store.runs import (
    RunState,
    begin_run,
    claim_run,
    commit_page,
    finish_run,
    follow_position,
    get_run,
    hand_off_run,
    touch_run,
)
from spark_integrations.tasks.base import FleetTask, delivery_key, record_failure
from spark_integrations.tasks.clients import target_for
from spark_integrations.tasks.context import coordination_redis, current_settings, store_session
from spark_integrations.tasks.kwargs import check_id
from spark_integrations.tasks.request import STORE_RETRY, Defer, GiveUp, GuardedRequest, Retry

__all__ = ["sync"]

log = logging.getLogger(__name__)

#: Pages one task reads before it hands the run to a continuation (TASK_SECONDS bounds it too).
PAGES_PER_TASK = 100
#: Seconds of work after which a task hands the run on, whatever its page count.
TASK_SECONDS = 30.0
#: The holder proves itself alive at least this often while it waits.
TOUCH_EVERY = 10.0
#: Waits longer than this (a long Retry-After, an open budget far ahead) hand the run off
#: with a countdown instead of holding the worker.
MAX_INLINE_WAIT = 10.0


class _RunLedger:
    """A run's failed attempts at its next page, kept across its tasks (a continuation's
    kwargs carry them), so the connection's retry policy bounds a page however often the run is
    handed on. Pages are reads: sending one again is always safe."""

    resend_safe = True

    def __init__(self, failures: int, failing_since: float | None) -> None:
        self.failures = failures
        self.failing_since = failing_since

    def queue_admission(self, pipe: Any) -> int:
        return 0

    def read_admission(self, replies: list[Any]) -> None:
        return None

    def undo_admission(self) -> None:
        return None

    def resend(self) -> None:
        return None

    def answered(self) -> None:
        return None

    def failed(self) -> tuple[int, float, int]:
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = time.time()
        return self.failures, self.elapsed(), self.failures

    def elapsed(self) -> float:
        return 0.0 if self.failing_since is None else max(0.0, time.time() - self.failing_since)

    def queue_success(self, pipe: Any, result: Any) -> None:
        self.failures, self.failing_since = 0, None

    def settled_without_pipeline(self, result: Any) -> None:
        self.failures, self.failing_since = 0, None


class _HandOff(Exception):
    """Stop here and let a continuation go on after ``countdown`` seconds."""

    def __init__(self, countdown: float, retries: int = 0) -> None:
        super().__init__(countdown)
        self.countdown = countdown
        self.retries = retries


class _LostLease(Exception):
    """The run was taken over (its lease went stale): write nothing more."""


def _result(run: SyncRun) -> dict[str, Any]:
    """The task's answer for a finished run (CONTRACT.md), with the run's extras."""
    took = None
    if run.started_at is not None and run.finished_at is not None:
        took = round((run.finished_at - run.started_at).total_seconds(), 3)
    return {
        "ok": True,
        "sync_id": run.sync_id,
        "run_id": run.id,
        "records": run.records,
        "pages": run.pages,
        "cursor": run.cursor,
        "full_refresh": run.full_refresh,
        "retries": run.retries,
        "deferred": run.deferred,
        "resumed": run.resumed,
        "duration_s": took,
    }


class _SyncRun:
    """One execution of ``integrations.sync``: a share of one run."""

    def __init__(
        self,
        task: FleetTask,
        sync_id: str,
        full_refresh: bool,
        failures: int = 0,
        failing_since: float | None = None,
    ) -> None:
        self.task = task
        self.ledger = _RunLedger(failures, failing_since)
        self.guarded: GuardedRequest | None = None
        self.sync_id = sync_id
        self.full_refresh = full_refresh
        self.task_id: str | None = task.request.id
        self.holder = uuid.uuid4().hex
        self.state: RunState | None = None
        self.last_touch = time.monotonic()
        self.started = time.monotonic()

    # -- starting -------------------------------------------------------------------------

    def begin(self, run_id: str | None) -> dict[str, Any] | None:
        """Hold the run (new, resumed or continued); an answer when there is nothing to do."""
        with store_session() as session:
            sync = session.get(SyncDefinition, self.sync_id)
            if sync is None:
                raise UsageError(f"no sync {self.sync_id!r}; `syncs list` shows them.")
            self.definition = (sync.connection_id, sync.stream, sync.destination)
            stream = self.stream_of(sync)
            lease = float(current_settings().sync_lease)
            if run_id is not None:
                claimed = claim_run(
                    session,
                    run_id,
                    self.holder,
                    sync_id=self.sync_id,
                    full_refresh=self.full_refresh,
                    lease=lease,
                )
                if claimed == "ended":
                    # A duplicate continuation of a run that is over: its outcome stands.
                    ended = get_run(session, run_id)
                    assert ended is not None
                    return self.outcome(ended)
                if claimed == "held":
                    self.come_back(lease)
                assert not isinstance(claimed, str)
                self.state = claimed
                return None
            lookback = stream.lookback
            started = begin_run(
                session,
                self.sync_id,
                full_refresh=self.full_refresh,
                task_id=self.task_id,
                holder=self.holder,
                since_of=lambda cursor: since_for(cursor, lookback) if stream.incremental else None,
                lease=lease,
            )
            if started.kind == "finished":
                return self.outcome(started.run)
            if started.kind == "busy":
                kind = "backfill" if self.full_refresh else "run"
                return {
                    "ok": True,
                    "skipped": True,
                    "sync_id": self.sync_id,
                    "run_id": started.run.id,
                    "reason": f"{kind} {started.run.id} of sync {self.sync_id} is in progress.",
                }
            if started.kind == "mine":
                self.come_back(lease)
            self.state = started.state
            return None

    def outcome(self, run: SyncRun) -> dict[str, Any]:
        """The answer of a run that is over: its result, or its failure raised again."""
        if run.status == "failed":
            raise SyncFailedError(run.error or f"run {run.id} failed.")
        return _result(run)

    def come_back(self, lease: float) -> NoReturn:
        """Another execution holds this message's run: a duplicate, or a redelivery after its
        worker died while the lease is still fresh. Look again once the lease could be stale;
        the run's end or its release settles which it was. (Stuck runs are bounded by the
        run's ``stalls``, not by the delivery count, which restarts with every retry.)"""
        self.forget_delivery()
        countdown = min(max(1.0, lease / 2), self.max_countdown())
        raise self.task.retry(countdown=countdown, max_retries=None)

    def forget_delivery(self) -> None:
        """This delivery's count is done with (Celery runs no after_return for a retry, a
        replacement or an ignored message): the next message of the run counts afresh."""
        request = self.task.request
        if request.id:
            coordination_redis().delete(delivery_key(request.id, request.retries or 0))

    def check_stalls(self) -> None:
        """A run taken over again and again without a page committed in between has a page
        that kills its worker (or an error that escapes every time): end it as failed."""
        state = self.state
        limit = current_settings().max_deliveries
        if state is not None and state.stalls > limit:
            self.fail(
                f"the run was taken over {state.stalls} times without committing a page "
                f"(limit {limit}): the page after {state.position!r} kills its worker or fails "
                "every time."
            )

    def stream_of(self, sync: SyncDefinition) -> Stream:
        self.connector = get_connector(sync.connection.provider)
        return self.connector.get_stream(sync.stream)

    # -- the pages ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        state = self.state
        assert state is not None
        self.check_stalls()
        connection_id, stream_name, spec = self.definition
        try:
            target = target_for(connection_id)
            destination = destination_for(spec)
            stream = target.connector.get_stream(stream_name)
        except (StoreError, CoordinationError):
            self.hand_off(STORE_RETRY)
        except IntegrationError as exc:
            self.fail(str(exc))
        info = target.info
        if info.status != "active":
            reason = f" ({info.status_reason})" if info.status_reason else ""
            self.fail(f"connection {info.id} is {info.status}{reason}; syncs need it active.")
        guarded = self.guarded = GuardedRequest(
            target, self.task_id or state.run_id, self.ledger, horizon=MAX_INLINE_WAIT
        )
        done_here = 0
        while True:
            try:
                page, retries, deferred = self.fetch(guarded, stream)
            except _HandOff as off:
                self.hand_off(off.countdown, off.retries)
            except (StoreError, CoordinationError, KombuError) as exc:
                log.warning("run %s: %s; handing off.", state.run_id, exc)
                self.hand_off(STORE_RETRY)
            done_here += 1
            busy = time.monotonic() - self.started
            share = min(TASK_SECONDS, current_settings().task_time_limit / 4)
            release = not page.finished and (done_here >= PAGES_PER_TASK or busy > share)
            finished = self.commit(destination, stream, page, retries, deferred, release)
            if finished is not None:
                self.flush()
                return finished
            if release:
                self.hand_off(0.0)

    def commit(
        self,
        destination: Destination,
        stream: Stream,
        page: Page,
        retries: int,
        deferred: int,
        release: bool,
    ) -> dict[str, Any] | None:
        """Deliver one page and commit it with the run's position and the cursor."""
        state = self.state
        assert state is not None
        loop: str | None = None
        try:
            with store_session() as session:
                delivered = destination.deliver(
                    session, Batch(state.sync_id, state.run_id, stream, page.records)
                )
                # A next position this run followed before is a cycle (A -> B -> A): the page
                # is committed and the run ends failed, in one transaction. Recorded with the
                # page, so a page asked again after a retry, hand-off or takeover is no cycle.
                first = None if page.finished else follow_position(session, state, page.position)
                if first is not None:
                    loop = position_loop_error(
                        connector=self.connector.name,
                        stream=stream.name,
                        position=page.position,
                        page=state.pages + 1,
                        first_page=first,
                    )
                if not commit_page(
                    session,
                    state,
                    position=page.position,
                    page_max=page.max_replication,
                    records=delivered.written,
                    retries=retries,
                    deferred=deferred,
                    release=release and loop is None,
                ):
                    raise _LostLease()
                if not page.finished and loop is None:
                    return None
                run = finish_run(session, state, error=loop)
                if run is None:
                    raise _LostLease()
                result = _result(run)
                first_task = run.task_id
            self.tell_first(first_task, result if loop is None else SyncFailedError(loop))
            if loop is None:
                return result
        except _LostLease:
            log.info("run %s was taken over; this share stops.", state.run_id)
            self.forget_delivery()
            raise Ignore() from None
        except (StoreError, CoordinationError) as exc:
            log.warning("run %s: the store failed mid-page (%s); handing off.", state.run_id, exc)
            self.hand_off(5.0)
        except IntegrationError as exc:
            self.fail(f"the destination refused a page: {exc}")
        finally:
            self.last_touch = time.monotonic()
        assert loop is not None  # only a cycle gets here: the run ended with the page
        self.fail(loop)  # its dead letter, and the task's failure

    def fetch(self, guarded: GuardedRequest, stream: Stream) -> tuple[Page, int, int]:
        """Read the next page as one guarded request (:mod:`tasks.request`); short waits are
        waited here, long ones hand the run off with a countdown."""
        state = self.state
        assert state is not None
        retries = 0
        deferred = 0
        while True:
            self.keep_alive()
            try:
                answer = guarded.send(
                    stream,
                    lambda client: client.perform_page(
                        stream, since=state.since, position=state.position
                    ),
                )
            except Defer as wait:
                deferred |= wait.reason == "rate budget"
                self.wait(wait.wait, retries)
                continue
            except Retry as again:
                retries += 1
                self.wait(again.wait, retries)
                continue
            except GiveUp as end:
                self.fail(end.error, retries)
            guarded.succeeded(None, now=False)
            return answer.value, retries, deferred

    def wait(self, seconds: float, retries: int) -> None:
        """Wait here when it is short; hand the run off with a countdown when it is long."""
        if seconds > MAX_INLINE_WAIT:
            raise _HandOff(min(seconds, self.max_countdown()), retries)
        self.pause(seconds)

    def flush(self) -> None:
        """Report a success the breaker has not heard of yet (it rides on the next request)."""
        if self.guarded is not None:
            try:
                self.guarded.flush()
            except CoordinationError as exc:
                log.warning("run: a breaker success was not reported (%s).", exc)

    def pause(self, seconds: float) -> None:
        """Wait, proving the lease alive meanwhile."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
            self.keep_alive()

    def keep_alive(self) -> None:
        """Renew the lease while a page takes long; stop if the run was taken over."""
        every = min(TOUCH_EVERY, current_settings().sync_lease / 3)
        if time.monotonic() - self.last_touch < every:
            return
        state = self.state
        assert state is not None
        with store_session() as session:
            held = touch_run(session, state)
        self.last_touch = time.monotonic()
        if not held:
            log.info("run %s was taken over; this share stops.", state.run_id)
            self.forget_delivery()
            raise Ignore()

    def max_countdown(self) -> float:
        return current_settings().visibility_timeout * 0.5

    # -- ending ---------------------------------------------------------------------------

    def hand_off(self, countdown: float, retries: int = 0) -> NoReturn:
        """Release the run and replace this task with a continuation (same task id)."""
        state = self.state
        assert state is not None
        self.flush()
        try:
            with store_session() as session:
                hand_off_run(session, state, retries=retries, countdown=countdown)
        except StoreError:
            pass  # the lease goes stale and the run is resumed after it
        self.forget_delivery()
        queue = QUEUE_BACKFILLS if state.full_refresh else QUEUE_SYNCS
        options: dict[str, Any] = {"queue": queue}
        if countdown > 0:
            options["countdown"] = countdown
        continuation = self.task.signature(
            kwargs={
                "sync_id": state.sync_id,
                "full_refresh": state.full_refresh,
                "run_id": state.run_id,
                "failures": self.ledger.failures,
                "failing_since": self.ledger.failing_since,
            },
            **options,
        )
        raise self.task.replace(continuation)

    def tell_first(self, task_id: str | None, outcome: dict[str, Any] | Exception) -> None:
        """A run taken over by another trigger ends under that trigger's task id; whoever
        waits on the id that started the run gets the same outcome."""
        if not task_id or task_id == self.task_id:
            return
        backend = self.task.backend
        if isinstance(outcome, Exception):
            backend.mark_as_failure(task_id, outcome)
        else:
            backend.mark_as_done(task_id, outcome)

    def fail(self, error: str, retries: int = 0) -> NoReturn:
        """End the run as failed: recorded in its history and as a dead letter."""
        state = self.state
        first_task = None
        if state is not None:
            with store_session() as session:
                run = finish_run(session, state, error=error, retries=retries)
                first_task = None if run is None else run.task_id
        self.tell_first(first_task, SyncFailedError(error))
        record_failure(
            task=TASK_SYNC,
            task_id=self.task_id,
            kwargs={"sync_id": self.sync_id, "full_refresh": self.full_refresh},
            error=error,
            attempts=retries,
        )
        raise SyncFailedError(error)


@shared_task(name=TASK_SYNC, base=FleetTask, bind=True, max_retries=None)
def sync(
    self: FleetTask,
    sync_id: Any = None,
    full_refresh: Any = False,
    run_id: Any = None,
    failures: Any = 0,
    failing_since: Any = None,
    **unknown: Any,
) -> dict[str, Any]:
    """Run one sync (CONTRACT.md); see the module docstring.

    ``run_id``, ``failures`` and ``failing_since`` are the fleet's own: a continuation names
    the run it goes on with and the failed attempts at its next page so far.
    """
    if unknown:
        raise UsageError(
            f"integrations.sync takes no argument {sorted(unknown)[0]!r}; "
            "it takes sync_id and full_refresh."
        )
    # An id the store cannot look up (a NUL, a lone surrogate) fails here, not as a store error.
    check_id("sync_id", sync_id)
    if not isinstance(full_refresh, bool):
        raise UsageError("full_refresh must be true or false.")
    if run_id is not None:
        check_id("run_id", run_id)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise UsageError("failures must be a whole number >= 0.")
    if failing_since is not None and (
        isinstance(failing_since, bool)
        or not isinstance(failing_since, int | float)
        or not math.isfinite(failing_since)
    ):
        raise UsageError("failing_since must be a number of seconds since the epoch.")
    execution = _SyncRun(self, sync_id, full_refresh, failures, failing_since)
    try:
        answer = execution.begin(run_id)
    except (StoreError, CoordinationError):
        raise self.retry(countdown=5.0, max_retries=None) from None
    if answer is not None:
        return answer
    return execution.run()
