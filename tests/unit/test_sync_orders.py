"""tasks.syncs with stream parameters and newest-first listings: the body of
``integrations.sync`` run as a worker runs it, against this machine's Redis, a SQLite store and
the sandbox's listing mocked with ``responses`` (the fixtures of the guarded request's tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from sqlalchemy import select

from spark_integrations.connectors.pagination import CursorPaginator
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.connectors.streams import Stream
from spark_integrations.errors import SyncFailedError
from spark_integrations.store import SyncCursor, SyncRun, session_scope
from spark_integrations.store.syncs import add_sync
from tests.unit import test_guarded_request as guarded
from tests.unit.test_guarded_request import ITEMS, Fleet
from tests.unit.test_sync_read_ahead import run_sync, stored

pytestmark = pytest.mark.server

fleet = guarded.fleet
rsps = guarded.rsps


def stamp(n: int) -> str:
    return f"2026-01-01T00:00:{n:02d}Z"


class Desc:
    """Records 1..``total`` listed newest first, ``size`` a page, from ``updated_since`` down
    when it is sent; ``c<index>`` cursors. Remembers every query asked."""

    def __init__(self, mock: responses.RequestsMock, total: int, size: int = 2) -> None:
        self.total = total
        self.size = size
        self.asked: list[dict[str, str]] = []
        self.before: Callable[[], None] | None = None
        mock.add_callback(responses.GET, ITEMS, callback=self.answer)

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        if self.before is not None:
            self.before()
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        self.asked.append(query)
        since = query.get("updated_since")
        numbers = [n for n in range(self.total, 0, -1) if since is None or stamp(n) >= since]
        start = int(query.get("cursor", "c0")[1:])
        page = numbers[start : start + self.size]
        more = start + self.size < len(numbers)
        body = {
            "data": [{"id": f"r{n}", "updated_at": stamp(n)} for n in page],
            "next_cursor": f"c{start + self.size}" if more else None,
        }
        return 200, {}, json.dumps(body)


def new_sync(fleet: Fleet, stream: str, params: dict[str, Any] | None = None) -> str:
    with session_scope(fleet.store) as session:
        return add_sync(
            session,
            connection_id=fleet.connection_id,
            stream=stream,
            schedule=None,
            params=params,
        ).id


def cursor(fleet: Fleet, sync_id: str) -> Any:
    with session_scope(fleet.store) as session:
        row = session.get(SyncCursor, sync_id)
        return None if row is None else row.value


def declare_unfiltered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's items newest first as a provider that cannot filter them would list them:
    the stream ``items_unfiltered`` (no ``since_param``)."""
    unfiltered = Stream(
        "items_unfiltered",
        "/v1/items",
        primary_key="id",
        replication_key="updated_at",
        paginator=CursorPaginator,
        order="newest_first",
    )
    monkeypatch.setattr(SandboxConnector, "streams", (*SandboxConnector.streams, unfiltered))


def test_every_page_is_asked_with_the_syncs_params(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    listing = Desc(rsps, total=7)
    sync_id = new_sync(fleet, "items_by_tag", {"tag": "alpha"})
    result = run_sync("t-params", sync_id)
    assert result["pages"] == 4 and len(listing.asked) == 4
    assert all(q.get("tag") == "alpha" for q in listing.asked), listing.asked


def test_a_newest_first_run_moves_the_cursor_only_at_its_end(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    listing = Desc(rsps, total=9)
    sync_id = new_sync(fleet, "items_newest")
    seen_cursors: list[Any] = []
    listing.before = lambda: seen_cursors.append(cursor(fleet, sync_id))
    result = run_sync("t-newest-1", sync_id)
    assert result["records"] == 9 and all(q.get("order") == "desc" for q in listing.asked)
    assert seen_cursors == [None] * 5, "no page moved the cursor before the run finished"
    assert cursor(fleet, sync_id) == stamp(9) and result["cursor"] == stamp(9)
    # The next run asks from the cursor (inclusive): r11 and r10 are new, r9 read again (the
    # upsert leaves it: not counted as written).
    listing.total = 11
    listing.before = None
    again = run_sync("t-newest-2", sync_id)
    assert listing.asked[-1]["updated_since"] == stamp(9)
    assert again["records"] == 2 and cursor(fleet, sync_id) == stamp(11)
    assert stored(fleet, sync_id) == {f"r{n}" for n in range(1, 12)}


def test_a_newest_first_stream_without_a_filter_stops_below_the_runs_since(
    fleet: Fleet, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare_unfiltered(monkeypatch)
    listing = Desc(rsps, total=10)
    sync_id = new_sync(fleet, "items_unfiltered")
    assert run_sync("t-unfiltered-1", sync_id)["pages"] == 5
    assert cursor(fleet, sync_id) == stamp(10)
    listing.total = 13
    asked_before = len(listing.asked)
    again = run_sync("t-unfiltered-2", sync_id)
    # Pages r13 r12 | r11 r10 | r9 r8 | ...: the since (r10) is inclusive, so the second page
    # does not end the run; the third reaches below it, ends the run, and is delivered.
    assert len(listing.asked) - asked_before == 3
    # (r10, r9 and r8 were stored already: the upsert does not count them as written.)
    assert (again["pages"], again["records"]) == (3, 3)
    assert cursor(fleet, sync_id) == stamp(13)
    assert stored(fleet, sync_id) == {f"r{n}" for n in range(1, 14)}


def test_a_stored_sync_whose_params_no_longer_fit_fails_with_a_sentence(
    fleet: Fleet, rsps: responses.RequestsMock
) -> None:
    sync_id = new_sync(fleet, "items_by_tag", {})  # as if the stream gained a required param
    with pytest.raises(SyncFailedError, match="needs the param 'tag'") as caught:
        run_sync("t-unfit", sync_id)
    assert "no longer fit" in str(caught.value) and len(rsps.calls) == 0
    with session_scope(fleet.store) as session:
        (run,) = session.scalars(select(SyncRun).where(SyncRun.sync_id == sync_id)).all()
        assert run.status == "failed" and "needs the param 'tag'" in (run.error or "")


class Listed:
    """Fixed records listed newest first, ``size`` a page, ignoring any filter; ``c<index>``
    cursors."""

    def __init__(self, mock: responses.RequestsMock, values: list[str], size: int = 2) -> None:
        self.values = values
        self.size = size
        self.asked = 0
        mock.add_callback(responses.GET, ITEMS, callback=self.answer)

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.asked += 1
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        start = int(query.get("cursor", "c0")[1:])
        page = self.values[start : start + self.size]
        more = start + self.size < len(self.values)
        body = {
            "data": [{"id": value, "updated_at": value} for value in page],
            "next_cursor": f"c{start + self.size}" if more else None,
        }
        return 200, {}, json.dumps(body)


def test_the_early_stop_compares_times_as_instants_not_as_text(
    fleet: Fleet, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 3339 times with their fractions trimmed (Go's RFC3339Nano): "10.5Z" sorts below
    "10Z" as text, yet comes after it. A page whose lowest time is after the run's since does
    not end the run, or the records between would be lost."""
    declare_unfiltered(monkeypatch)
    t = "2026-01-01T00:00:"
    old = [f"{t}10Z", f"{t}09Z", f"{t}08Z"]
    listing = Listed(rsps, old)
    sync_id = new_sync(fleet, "items_unfiltered")
    run_sync("t-instants-1", sync_id)
    assert cursor(fleet, sync_id) == f"{t}10Z"
    # New since: 11Z and 10.5Z (page 1), 10.25Z and 10.1Z (page 2), then the old ones.
    listing.values = [f"{t}11Z", f"{t}10.5Z", f"{t}10.25Z", f"{t}10.1Z", *old]
    again = run_sync("t-instants-2", sync_id)
    assert stored(fleet, sync_id) == set(listing.values), "no new record left unread"
    assert again["pages"] == 3 and cursor(fleet, sync_id) == f"{t}11Z"


def test_the_early_stop_goes_on_when_values_cannot_be_compared(
    fleet: Fleet, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value that is not of the since's kind (text beside a time) says nothing about where
    the run is: it reads on rather than stop on a comparison of text."""
    declare_unfiltered(monkeypatch)
    listing = Listed(rsps, ["2026-01-01T00:00:10Z"])
    sync_id = new_sync(fleet, "items_unfiltered")
    run_sync("t-kinds-1", sync_id)
    listing.values = ["2026-01-01T00:00:12Z", "(unknown)", "2026-01-01T00:00:11Z", "x"]
    again = run_sync("t-kinds-2", sync_id)
    assert again["pages"] == 2
    assert stored(fleet, sync_id) == {*listing.values, "2026-01-01T00:00:10Z"}
