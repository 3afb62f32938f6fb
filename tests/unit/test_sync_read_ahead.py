"""tasks.syncs reads page n + 1 while page n commits: the body of ``integrations.sync`` run as a
worker runs it, against this machine's Redis, a SQLite store and a provider mocked with
``responses`` (whose callbacks see each request as it arrives, on the thread that sends it)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from celery import Celery
from celery.exceptions import Ignore
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import spark_integrations.tasks.syncs  # noqa: F401 - registers integrations.sync
from spark_integrations.constants import TASK_SYNC
from spark_integrations.destinations import Batch, Delivered
from spark_integrations.destinations.base import discover_destinations, register_destination
from spark_integrations.destinations.builtin import StoreDestination
from spark_integrations.store import Record, SyncRun, session_scope
from spark_integrations.store.syncs import add_sync
from tests.unit import test_guarded_request as guarded
from tests.unit.test_guarded_request import ITEMS, Fleet

pytestmark = pytest.mark.server

# The fixtures of the guarded request's tests: Redis, a SQLite store, a sandbox connection.
fleet = guarded.fleet
rsps = guarded.rsps

APP = Celery("unit-read-ahead", set_as_current=False)
APP.finalize()

#: Deadline for an event that happens at once when the code is right.
EVENTUALLY = 60.0


@register_destination
class HeldStore(StoreDestination):
    """The record store, which lets a test act while a page is being delivered (inside the
    page's transaction, before its commit)."""

    kind = "unit-held-store"
    during: ClassVar[dict[str, Any]] = {}

    def deliver(self, session: Session, batch: Batch) -> Delivered:
        hook = self.during.get(batch.records[0]["id"])
        if hook is not None:
            hook()
        return super().deliver(session, batch)


@pytest.fixture(autouse=True)
def held_store() -> Iterator[None]:
    discover_destinations.cache_clear()
    yield
    HeldStore.during.clear()
    discover_destinations.cache_clear()


def record(n: int) -> dict[str, Any]:
    return {"id": f"r{n}", "updated_at": f"2026-01-01T00:00:{n:02d}Z"}


class Listing:
    """Pages of two records, ``c<n>`` cursors, ``last`` pages; ``on_page[n]`` runs when page n
    is asked (on the asking thread), ``fail_once`` pages answer 503 the first time."""

    def __init__(
        self, mock: responses.RequestsMock, last: int, fail_once: tuple[int, ...] = ()
    ) -> None:
        self.last = last
        self.asked: list[int] = []
        self.on_page: dict[int, Any] = {}
        self.failing = set(fail_once)
        mock.add_callback(responses.GET, ITEMS, callback=self.answer)

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        cursor = parse_qs(urlsplit(request.url).query).get("cursor", ["c1"])[0]
        n = int(cursor[1:])
        self.asked.append(n)
        hook = self.on_page.get(n)
        if hook is not None:
            hook()
        if n in self.failing:
            self.failing.discard(n)
            return 503, {}, "unavailable"
        body = {
            "data": [record(2 * n - 1), record(2 * n)],
            "next_cursor": f"c{n + 1}" if n < self.last else None,
        }
        return 200, {}, json.dumps(body)


def new_sync(fleet: Fleet) -> str:
    with session_scope(fleet.store) as session:
        return add_sync(
            session,
            connection_id=fleet.connection_id,
            stream="items",
            schedule=None,
            destination=HeldStore.kind,
        ).id


def run_sync(task_id: str, sync_id: str) -> dict[str, Any]:
    """``integrations.sync``'s body, as a worker runs it for one delivery of one message."""
    task = APP.tasks[TASK_SYNC]
    task.push_request(id=task_id, retries=0, called_directly=False)
    try:
        result: dict[str, Any] = task.run(sync_id=sync_id)
        return result
    finally:
        task.pop_request()


def stored(fleet: Fleet, sync_id: str) -> set[str]:
    with session_scope(fleet.store) as session:
        keys = session.scalars(select(Record.key).where(Record.sync_id == sync_id)).all()
    return {json.loads(k) for k in keys}


def the_run(fleet: Fleet, sync_id: str) -> SyncRun:
    with session_scope(fleet.store) as session:
        (run,) = session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)).all()
        return run


def test_the_next_page_is_asked_while_a_page_is_delivered_and_committed(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    """Page 1's delivery holds until page 2 has been asked: only a read ahead can ask it."""
    listing = Listing(rsps, last=3)
    sync_id = new_sync(fleet)
    asked_second = threading.Event()
    listing.on_page[2] = asked_second.set
    seen: list[bool] = []
    HeldStore.during["r1"] = lambda: seen.append(asked_second.wait(EVENTUALLY))
    result = run_sync("t-ahead", sync_id)
    assert seen == [True], "page 2 was asked while page 1 was still being committed"
    assert (result["records"], result["pages"]) == (6, 3)
    assert listing.asked == [1, 2, 3], "each page asked once; none after the last"
    assert stored(fleet, sync_id) == {f"r{n}" for n in range(1, 7)}


def test_a_page_read_ahead_is_discarded_when_the_lease_of_its_predecessor_is_lost(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    """Page 3 is read ahead while page 2 commits; when it is asked, another holder takes the
    run over (once page 2 committed). Page 3's commit is refused,
    and page 4, read ahead meanwhile, is dropped: nothing after page 2 is stored."""
    listing = Listing(rsps, last=5)
    sync_id = new_sync(fleet)

    def take_over() -> None:
        # Page 3 is asked while page 2 commits: take the run over only once page 2 committed,
        # whichever thread the machine runs first.
        deadline = time.monotonic() + EVENTUALLY
        while the_run(fleet, sync_id).pages < 2:
            assert time.monotonic() < deadline, "page 2 never committed"
            time.sleep(0.01)
        with session_scope(fleet.store) as session:
            session.execute(
                update(SyncRun).where(SyncRun.sync_id == sync_id).values(holder="another")
            )

    listing.on_page[3] = take_over
    with pytest.raises(Ignore):
        run_sync("t-lost", sync_id)
    assert listing.asked == [1, 2, 3, 4], "page 4 was read ahead, then dropped"
    assert stored(fleet, sync_id) == {"r1", "r2", "r3", "r4"}
    run = the_run(fleet, sync_id)
    assert (run.pages, run.records, run.position, run.holder) == (2, 4, "c3", "another")


def test_a_failure_met_ahead_is_retried_in_line_and_counted(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    listing = Listing(rsps, last=3, fail_once=(2,))
    sync_id = new_sync(fleet)
    result = run_sync("t-retry", sync_id)
    assert (result["records"], result["pages"], result["retries"]) == (6, 3, 1)
    assert listing.asked == [1, 2, 2, 3]
    with session_scope(fleet.store) as session:
        count = session.scalar(select(func.count()).where(Record.sync_id == sync_id))
    assert count == 6
