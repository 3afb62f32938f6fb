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

A page is read ahead while the page before it commits: once page *n* is read, the request for
page *n + 1* (at the position page *n* hands back) goes out on a thread of the task, through
the same guarded request (budget, breaker, retry decision), while page *n* is delivered and
committed. Pages still commit one at a time, in order, each fenced on the lease: the page read
ahead is taken only once its predecessor committed, and is discarded (waited for, never
delivered) when that commit fails, the lease is lost, the run ends or is handed on. Nothing is
read ahead after the last page of a task's share or of the stream. What the read ahead met (a
budget to wait for, a failure to retry) is handled as if it had happened in line.

The stream's order decides when the sync's cursor moves (:mod:`connectors.streams`). Oldest
first: with each page, to its highest replication value. Newest first: only when the run
finishes, to the highest value it read (kept meanwhile in the run's ``pending_cursor``, committed
with each page), because until the run has read back to where the previous one began, records
below that value are still unread; a stream the provider cannot filter ends with the first page
going below the run's ``since``. Delta: the provider's cursor handed with the last page replaces
the sync's cursor when the run finishes. Every page is asked with the sync's stream parameters,
checked again against the stream when the run begins.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, NoReturn

from celery import shared_task
from celery.exceptions import Ignore
from kombu.exceptions import KombuError

from spark_integrations import logs, metrics
from spark_integrations.connectors.base import Answer
from spark_integrations.connectors.positions import position_loop_error
from spark_integrations.connectors.streams import Page, Stream, below
from spark_integrations.constants import TASK_SYNC
from spark_integrations.destinations import Batch, Destination, destination_for
from spark_integrations.errors import (
    CoordinationError,
    IntegrationError,
    StoreError,
    SyncFailedError,
    UsageError,
)
from spark_integrations.store.runs import commit_page, finish_run
from spark_integrations.tasks.base import FleetTask
from spark_integrations.tasks.clients import target_for
from spark_integrations.tasks.context import current_settings, store_session
from spark_integrations.tasks.kwargs import check_id
from spark_integrations.tasks.lease import HandOff, LostLease, RunShare, run_result
from spark_integrations.tasks.request import STORE_RETRY, Defer, GiveUp, GuardedRequest, Retry
from spark_integrations.webhooks.outbound import announce_run

__all__ = ["sync"]

log = logging.getLogger(__name__)

#: Pages one task reads before it hands the run to a continuation (TASK_SECONDS bounds it too).
PAGES_PER_TASK = 100
#: Seconds of work after which a task hands the run on, whatever its page count.
TASK_SECONDS = 30.0
#: Waits longer than this (a long Retry-After, an open budget far ahead) hand the run off
#: with a countdown instead of holding the worker.
MAX_INLINE_WAIT = 10.0


class _Ahead:
    """The next page, read on the task's thread while the page before it commits."""

    def __init__(self, pool: ThreadPoolExecutor, read: Callable[[], Answer[Page]]) -> None:
        self.done_at = 0.0
        self.future: Future[Answer[Page]] = pool.submit(logs.carried(self._read), read)

    def _read(self, read: Callable[[], Answer[Page]]) -> Answer[Page]:
        try:
            return read()
        finally:
            self.done_at = time.monotonic()

    def since_done(self) -> float:
        """Seconds since the read ended (its wait, if it must wait, started then)."""
        return max(0.0, time.monotonic() - self.done_at)

    def discard(self) -> None:
        """Wait for the read to end, and drop what it brought."""
        self.future.exception()  # waits; whatever the read met, the page is not taken


class _SyncRun(RunShare):
    """One execution of ``integrations.sync``: the pages of its share of one run."""

    #: The sync's stream parameters, as the stream validated them.
    stream_params: dict[str, Any] | None = None

    guarded: GuardedRequest | None = None
    ahead: _Ahead | None = None
    pool: ThreadPoolExecutor | None = None
    #: The run's failed attempts before the page read ahead (kept if it is discarded).
    ledger_before: tuple[int, float | None] = (0, None)

    def run(self) -> dict[str, Any]:
        state = self.state
        assert state is not None
        self.check_stalls()
        connection_id, stream_name, spec = self.definition
        try:
            target = target_for(connection_id)
            destination = destination_for(spec, self.destination_params, self.deliver)
            stream = target.connector.get_stream(stream_name)
        except (StoreError, CoordinationError):
            self.hand_off(STORE_RETRY)
        except IntegrationError as exc:
            self.fail(str(exc))
        try:
            # Checked when the sync was added; the connector may have changed its stream since.
            self.stream_params = stream.validate_params(self.params)
        except UsageError as exc:
            self.fail(f"the sync's stream parameters no longer fit its stream: {exc}")
        info = target.info
        if info.status != "active":
            reason = f" ({info.status_reason})" if info.status_reason else ""
            self.fail(f"connection {info.id} is {info.status}{reason}; syncs need it active.")
        guarded = self.guarded = GuardedRequest(
            target, self.task_id or state.run_id, self.ledger, horizon=MAX_INLINE_WAIT
        )
        try:
            return self.pages(guarded, destination, stream)
        finally:
            # Whatever ends the share (a failure, a lost lease, a time limit arriving while the
            # page read ahead is dropped): the read-ahead thread is joined, so it cannot outlive
            # the task in this process, and a page's success the breaker has not heard of is
            # reported (it may hold the half-open probe of every connection of the connector).
            try:
                self.discard_ahead()
            finally:
                if self.pool is not None:
                    self.pool.shutdown(wait=True)
                self.flush()

    def pages(
        self, guarded: GuardedRequest, destination: Destination, stream: Stream
    ) -> dict[str, Any]:
        """Read, deliver and commit pages until the run ends or this share hands it on."""
        state = self.state
        assert state is not None
        done_here = 0
        while True:
            try:
                page, retries, deferred = self.fetch(guarded, stream)
            except HandOff as off:
                self.hand_off(off.countdown, off.retries)
            except (StoreError, CoordinationError, KombuError) as exc:
                log.warning("run %s: %s; handing off.", state.run_id, exc)
                self.hand_off(STORE_RETRY)
            page = self.stop_early(stream, page)
            done_here += 1
            busy = time.monotonic() - self.started
            share = min(TASK_SECONDS, current_settings().task_time_limit / 4)
            release = not page.finished and (done_here >= PAGES_PER_TASK or busy > share)
            if not page.finished and not release:
                self.read_ahead(guarded, stream, page.position)
            finished = self.commit(destination, stream, page, retries, deferred, release)
            self.count_page(stream, page, finished is not None)
            if finished is not None:
                self.flush()
                return finished
            if release:
                self.hand_off(0.0)

    def count_page(self, stream: Stream, page: Page, finished: bool) -> None:
        """Count a committed page, its records and, with the last page, the run (metrics)."""
        labels = {"connector": self.connector.name, "stream": stream.name, "sync_id": self.sync_id}
        metrics.count("sync_pages", **labels)
        metrics.count("sync_records", len(page.records), **labels)
        if finished:
            metrics.count("sync_runs", outcome="succeeded", **labels)

    def stop_early(self, stream: Stream, page: Page) -> Page:
        """A newest-first stream the provider cannot filter ends with the first page reaching
        below the run's ``since`` (its records are still delivered): the run has read back to
        where the previous run began."""
        since = self.state.since if self.state is not None else None
        if (
            page.finished
            or stream.order != "newest_first"
            or stream.incremental
            or since is None
            or page.min_replication is None
            or not below(page.min_replication, since)
        ):
            return page
        return replace(page, finished=True, position=None)

    def read_ahead(self, guarded: GuardedRequest, stream: Stream, position: Any) -> None:
        """Send the request for the page at ``position`` on the task's thread."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-read-ahead")
        self.ledger_before = (self.ledger.failures, self.ledger.failing_since)
        self.ahead = _Ahead(self.pool, lambda: self.attempt(guarded, stream, position))

    def discard_ahead(self) -> None:
        """Drop a page read ahead (its predecessor did not commit, or the share ends); its
        failed attempt, if it failed, does not count against the page read next."""
        ahead, self.ahead = self.ahead, None
        if ahead is not None:
            ahead.discard()
            self.ledger.failures, self.ledger.failing_since = self.ledger_before

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
                done = commit_page(
                    session,
                    state,
                    position=page.position,
                    page_max=page.max_replication,
                    records=delivered.written,
                    retries=retries,
                    deferred=deferred,
                    release=release,
                    follow=not page.finished,
                    order=stream.order,
                    page_cursor=page.cursor,
                )
                if not done:
                    raise LostLease()
                if done.loop_from is not None:
                    loop = position_loop_error(
                        connector=self.connector.name,
                        stream=stream.name,
                        position=page.position,
                        page=state.pages,
                        first_page=done.loop_from,
                    )
                if not page.finished and loop is None:
                    return None
                run = finish_run(session, state, error=loop, order=stream.order)
                if run is None:
                    raise LostLease()
                result = run_result(run)
                first_task = run.task_id
            self.tell_first(first_task, result if loop is None else SyncFailedError(loop))
            announce_run(run, connection_id=self.definition[0], stream=stream.name)
            if loop is None:
                return result
        except LostLease:
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
        """Read the next page as one guarded request (:mod:`tasks.request`), or take the one
        read ahead; short waits are waited here, long ones hand the run off with a countdown."""
        state = self.state
        assert state is not None
        retries = 0
        deferred = 0
        while True:
            self.keep_alive()
            ahead, self.ahead = self.ahead, None
            waited = 0.0
            try:
                if ahead is not None:
                    ahead.future.exception()  # the read ended: a wait it met runs from then
                    waited = ahead.since_done()
                    answer = ahead.future.result()
                else:
                    answer = self.attempt(guarded, stream, state.position)
            except Defer as wait:
                deferred |= wait.reason == "rate budget"
                self.wait(max(0.0, wait.wait - waited), retries)
                continue
            except Retry as again:
                retries += 1
                self.wait(max(0.0, again.wait - waited), retries)
                continue
            except GiveUp as end:
                self.fail(end.error, retries)
            guarded.succeeded(None, now=False)
            return answer.value, retries, deferred

    def attempt(self, guarded: GuardedRequest, stream: Stream, position: Any) -> Answer[Page]:
        """One guarded request for the page at ``position``."""
        state = self.state
        assert state is not None
        return guarded.send(
            stream,
            lambda client: client.perform_page(
                stream, since=state.since, position=position, params=self.stream_params
            ),
        )

    def wait(self, seconds: float, retries: int) -> None:
        """Wait here when it is short; hand the run off with a countdown when it is long."""
        if seconds > MAX_INLINE_WAIT:
            raise HandOff(min(seconds, self.max_countdown()), retries)
        self.pause(seconds)

    def flush(self) -> None:
        """Report a success the breaker has not heard of yet (it rides on the next request)."""
        if self.guarded is not None:
            try:
                self.guarded.flush()
            except CoordinationError as exc:
                log.warning("run: a breaker success was not reported (%s).", exc)

    def before_hand_off(self) -> None:
        self.discard_ahead()
        self.flush()

    def fail(self, error: str, retries: int = 0) -> NoReturn:
        self.discard_ahead()
        super().fail(error, retries)


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
    if execution.state is not None:  # the run's fields on the rest of the task's log lines
        logs.add(run_id=execution.state.run_id, connection_id=execution.definition[0])
        logs.add(connector=execution.connector.name)
    if answer is not None:
        return answer
    return execution.run()
