"""The ``items`` resource: five pagination styles, ``updated_since``, single records, churn."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from spark_integrations.sandbox import SandboxServer
from tests.unit.sandbox.conftest import StartSandbox
from tests.unit.sandbox.helpers import RECORDS, stats, wait_for

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

Record = dict[str, Any]
Walker = Callable[[requests.Session, str, dict[str, str], int], list[Record]]


def _get(session: requests.Session, url: str, params: dict[str, str]) -> requests.Response:
    answer = session.get(url, params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def walk_cursor(s: requests.Session, url: str, extra: dict[str, str], limit: int) -> list[Record]:
    """Follow ``next_cursor`` until null."""
    records: list[Record] = []
    params = {"limit": str(limit), **extra}
    while True:
        body = _get(s, f"{url}/v1/items", params).json()
        assert set(body) == {"data", "next_cursor"} and len(body["data"]) <= limit
        records += body["data"]
        if body["next_cursor"] is None:
            return records
        params["cursor"] = body["next_cursor"]


def walk_offset(s: requests.Session, url: str, extra: dict[str, str], limit: int) -> list[Record]:
    """Advance ``offset`` until it reaches ``total``."""
    records: list[Record] = []
    offset = 0
    while True:
        params = {"offset": str(offset), "limit": str(limit), **extra}
        body = _get(s, f"{url}/v1/items/by-offset", params).json()
        assert (body["offset"], body["limit"]) == (offset, limit)
        records += body["data"]
        offset += limit
        if offset >= body["total"]:
            assert len(records) == body["total"]
            return records


def walk_page(s: requests.Session, url: str, extra: dict[str, str], limit: int) -> list[Record]:
    """Pages 1..total_pages."""
    records: list[Record] = []
    page = 1
    while True:
        params = {"page": str(page), "per_page": str(limit), **extra}
        body = _get(s, f"{url}/v1/items/by-page", params).json()
        assert (body["page"], body["per_page"]) == (page, limit)
        records += body["data"]
        if page >= body["total_pages"]:
            return records
        page += 1


def walk_link(s: requests.Session, url: str, extra: dict[str, str], limit: int) -> list[Record]:
    """Follow ``Link: <...>; rel="next"`` (absolute URLs) until absent."""
    records: list[Record] = []
    answer = _get(s, f"{url}/v1/items/by-link", {"limit": str(limit), **extra})
    while True:
        body = answer.json()
        assert isinstance(body, list)
        records += body
        nxt = answer.links.get("next")
        if nxt is None:
            assert "Link" not in answer.headers
            return records
        assert nxt["url"].startswith(url + "/v1/items/by-link?") and "after=" in nxt["url"]
        answer = _get(s, nxt["url"], {})


def walk_token(s: requests.Session, url: str, extra: dict[str, str], limit: int) -> list[Record]:
    """Follow ``nextToken`` until absent."""
    records: list[Record] = []
    params = {"max_results": str(limit), **extra}
    while True:
        body = _get(s, f"{url}/v1/items/by-token", params).json()
        records += body["items"]
        if "nextToken" not in body:
            return records
        assert set(body) == {"items", "nextToken"}
        params["next_token"] = body["nextToken"]


WALKERS = {
    "cursor": walk_cursor,
    "offset": walk_offset,
    "page": walk_page,
    "link": walk_link,
    "token": walk_token,
}


def order_key(record: Record) -> tuple[str, str]:
    return record["updated_at"], record["id"]


@pytest.mark.parametrize("limit", [100, 7])
@pytest.mark.parametrize("style", list(WALKERS))
def test_each_style_walks_the_dataset_exactly_once_in_order(
    sandbox: SandboxServer, api: requests.Session, style: str, limit: int
) -> None:
    records = WALKERS[style](api, sandbox.url, {}, limit)
    ids = [r["id"] for r in records]
    assert len(ids) == RECORDS and len(set(ids)) == RECORDS
    assert set(ids) == {f"item-{n:06d}" for n in range(1, RECORDS + 1)}
    assert records == sorted(records, key=order_key)


def test_records_have_the_documented_shape_and_distinct_past_times(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    records = walk_cursor(api, sandbox.url, {}, 100)
    now = datetime.now(UTC)
    for record in records:
        assert set(record) == {"id", "name", "value", "version", "updated_at"}
        assert isinstance(record["value"], int) and record["version"] == 1
        assert ISO.match(record["updated_at"]), record["updated_at"]
        assert datetime.fromisoformat(record["updated_at"]) < now
    assert len({r["updated_at"] for r in records}) == RECORDS
    # The id order is not the time order: a client must not rely on ids.
    assert [r["id"] for r in records] != sorted(r["id"] for r in records)


@pytest.mark.parametrize("style", list(WALKERS))
def test_updated_since_is_inclusive(
    sandbox: SandboxServer, api: requests.Session, style: str
) -> None:
    everything = walk_cursor(api, sandbox.url, {}, 100)
    pivot = everything[49]
    since = {"updated_since": pivot["updated_at"]}
    records = WALKERS[style](api, sandbox.url, since, 30)
    assert records == everything[49:]


def test_updated_since_accepts_offsets_and_rejects_garbage(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    everything = walk_cursor(api, sandbox.url, {}, 100)
    pivot = datetime.fromisoformat(everything[100]["updated_at"])
    in_paris = pivot.astimezone(timezone(timedelta(hours=1))).isoformat()
    assert walk_cursor(api, sandbox.url, {"updated_since": in_paris}, 100) == everything[100:]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert walk_offset(api, sandbox.url, {"updated_since": future}, 100) == []
    with api.get(f"{sandbox.url}/v1/items", params={"updated_since": "yesterday"}) as answer:
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_request"
        assert "updated_since" in answer.json()["message"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/items", {"limit": "0"}),
        ("/v1/items", {"limit": "101"}),
        ("/v1/items", {"limit": "ten"}),
        ("/v1/items", {"cursor": "not-a-cursor!"}),
        ("/v1/items/by-offset", {"offset": "-1"}),
        ("/v1/items/by-page", {"page": "0"}),
        ("/v1/items/by-page", {"per_page": "500"}),
        ("/v1/items/by-link", {"after": "%%%"}),
        ("/v1/items/by-token", {"max_results": "x"}),
    ],
)
def test_bad_paging_parameters_are_400(
    sandbox: SandboxServer, api: requests.Session, path: str, params: dict[str, str]
) -> None:
    with api.get(sandbox.url + path, params=params) as answer:
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_request"


def test_page_metadata(sandbox: SandboxServer, api: requests.Session) -> None:
    with api.get(f"{sandbox.url}/v1/items/by-offset", params={"offset": "240"}) as answer:
        body = answer.json()
    assert (len(body["data"]), body["offset"], body["limit"], body["total"]) == (10, 240, 100, 250)
    with api.get(f"{sandbox.url}/v1/items/by-page", params={"page": "3"}) as answer:
        body = answer.json()
    assert (len(body["data"]), body["page"], body["per_page"], body["total_pages"]) == (
        50,
        3,
        100,
        3,
    )
    with api.get(f"{sandbox.url}/v1/items/by-page", params={"page": "9"}) as answer:
        assert answer.status_code == 200 and answer.json()["data"] == []


def test_one_item_or_404(sandbox: SandboxServer, api: requests.Session) -> None:
    with api.get(f"{sandbox.url}/v1/items/item-000042") as answer:
        assert answer.status_code == 200
        assert answer.json()["id"] == "item-000042"
    with api.get(f"{sandbox.url}/v1/items/item-999999") as answer:
        assert answer.status_code == 404
        assert answer.json()["error"] == "not_found"


def test_churn_moves_items_forward_and_they_reappear_after_a_cursor(
    start_sandbox: StartSandbox, api: requests.Session
) -> None:
    srv = start_sandbox(records=50, churn=300)
    with api.get(f"{srv.url}/v1/items", params={"limit": "10"}) as answer:
        first = answer.json()
    seen = {r["id"]: r for r in first["data"]}
    wait_for(lambda: stats(srv.url)["items_updated"] >= 150)
    rest = walk_cursor(api, srv.url, {"cursor": first["next_cursor"]}, 100)
    # The walk after the cursor is in strict (updated_at, id) order, and updated records come
    # back: some of the first page's items reappear with a newer version and time.
    assert rest == sorted(rest, key=order_key)
    times = [r["updated_at"] for r in rest]
    assert len(set(times)) == len(times)
    back = [r for r in rest if r["id"] in seen]
    assert back
    for record in back:
        before = seen[record["id"]]
        assert record["version"] > before["version"]
        assert record["updated_at"] > before["updated_at"]
    # One record's updated_at moves forward with its version.
    with api.get(f"{srv.url}/v1/items/item-000001") as answer:
        one = answer.json()
    wait_for(lambda: _fetch(api, f"{srv.url}/v1/items/item-000001")["version"] > one["version"])
    assert _fetch(api, f"{srv.url}/v1/items/item-000001")["updated_at"] > one["updated_at"]


def _fetch(session: requests.Session, url: str) -> Record:
    with session.get(url, timeout=10) as answer:
        record: Record = answer.json()
    return record
