"""Holding a sync run: one share of it per task, under the run's lease (:mod:`store.runs`).

:class:`RunShare` is the part of an execution of ``integrations.sync`` that holds the run: it
starts, resumes or continues it, proves itself alive while it waits, hands the run on to a
continuation (``Task.replace``, which keeps the task id), and ends it failed with a dead letter.
:mod:`tasks.syncs` reads and commits the pages in between. :class:`RunLedger` keeps the run's
failed attempts at its next page across its tasks, for the guarded request (:mod:`tasks.request`).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, NoReturn

from celery.exceptions import Ignore

from spark_integrations import metrics
from spark_integrations.connectors import get_connector
from spark_integrations.connectors.streams import Stream, since_for
from spark_integrations.constants import QUEUE_BACKFILLS, QUEUE_SYNCS, TASK_SYNC
from spark_integrations.errors import StoreError, SyncFailedError, UsageError
from spark_integrations.store import SyncDefinition, SyncRun
from spark_integrations.store.runs import (
    RunState,
    begin_run,
    claim_run,
    finish_run,
    get_run,
    hand_off_run,
    touch_run,
)
from spark_integrations.tasks.base import FleetTask, delivery_key, record_failure
from spark_integrations.tasks.context import coordination_redis, current_settings, store_session
from spark_integrations.webhooks.outbound import announce_run

__all__ = ["HandOff", "LostLease", "RunLedger", "RunShare", "run_result"]

log = logging.getLogger("spark_integrations.tasks.syncs")

#: The holder proves itself alive at least this often while it waits.
TOUCH_EVERY = 10.0


class RunLedger:
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

    def start_clock(self) -> None:
        # A page waiting for a token starts the run's clock, which its continuations carry on.
        if self.failing_since is None:
            self.failing_since = time.time()

    def elapsed(self) -> float:
        return 0.0 if self.failing_since is None else max(0.0, time.time() - self.failing_since)

    def queue_success(self, pipe: Any, result: Any) -> None:
        self.failures, self.failing_since = 0, None

    def settled_without_pipeline(self, result: Any) -> None:
        self.failures, self.failing_since = 0, None


class HandOff(Exception):
    """Stop here and let a continuation go on after ``countdown`` seconds."""

    def __init__(self, countdown: float, retries: int = 0) -> None:
        super().__init__(countdown)
        self.countdown = countdown
        self.retries = retries


class LostLease(Exception):
    """The run was taken over (its lease went stale): write nothing more."""


def run_result(run: SyncRun) -> dict[str, Any]:
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


def run_since(stream: Stream, cursor: Any, lookback: float) -> Any:
    """A run's fixed ``since``: the cursor less the lookback for a stream the provider filters
    or a newest-first one (which stops reading below it), a delta stream's cursor as stored
    (where its first page starts), nothing for a stream read in full."""
    if stream.order == "delta":
        return cursor
    if stream.incremental or stream.order == "newest_first":
        return since_for(cursor, lookback)
    return None


class RunShare:
    """One execution of ``integrations.sync`` holding its share of one run."""

    def __init__(
        self,
        task: FleetTask,
        sync_id: str,
        full_refresh: bool,
        failures: int = 0,
        failing_since: float | None = None,
    ) -> None:
        self.task = task
        self.ledger = RunLedger(failures, failing_since)
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
            self.params: dict[str, Any] = dict(sync.params or {})
            self.destination_params: dict[str, str] = dict(sync.destination_params or {})
            self.deliver: str = sync.deliver
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
                since_of=lambda cursor: run_since(stream, cursor, lookback),
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
        return run_result(run)

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

    def before_hand_off(self) -> None:
        """What a share does before it lets the run go (nothing here)."""

    def hand_off(self, countdown: float, retries: int = 0) -> NoReturn:
        """Release the run and replace this task with a continuation (same task id)."""
        state = self.state
        assert state is not None
        self.before_hand_off()
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
        run = None
        if state is not None:
            with store_session() as session:
                run = finish_run(session, state, error=error, retries=retries)
                first_task = None if run is None else run.task_id
        self.tell_first(first_task, SyncFailedError(error))
        if run is not None:
            connection_id, stream, _ = getattr(self, "definition", (None, None, None))
            announce_run(run, connection_id=connection_id, stream=stream)
            connector = getattr(self, "connector", None)
            metrics.count(
                "sync_runs",
                connector=getattr(connector, "name", "unknown"),
                stream=str(stream),
                sync_id=self.sync_id,
                outcome="failed",
            )
        record_failure(
            task=TASK_SYNC,
            task_id=self.task_id,
            kwargs={"sync_id": self.sync_id, "full_refresh": self.full_refresh},
            error=error,
            attempts=retries,
        )
        raise SyncFailedError(error)
