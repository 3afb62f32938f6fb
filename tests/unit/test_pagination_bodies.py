"""The after_last (Stripe), after_max (Discord) and next_url (Graph) paginators against fake
listings served by ``responses``: walks, stops, resume, loops, origins."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from spark_integrations.connectors.pagination import (
    AfterLastPaginator,
    AfterMaxPaginator,
    NextURLPaginator,
    Paginator,
    SinglePagePaginator,
)
from spark_integrations.errors import FatalError, PaginationLoopError
from tests.unit.paging import (
    API,
    Reply,
    query,
    rsps_fixture,  # noqa: F401 - the rsps fixture
    session_fixture,  # noqa: F401 - the session fixture
    walk,
)

# --- after_last (Stripe) --------------------------------------------------------------------------

CUSTOMERS = [{"id": f"cus_{k}"} for k in range(7)]


def stripe_list(request: requests.PreparedRequest) -> Reply:
    q = query(request)
    limit = int(q.get("limit", "10"))
    start = 0
    if "starting_after" in q:
        start = next(i for i, c in enumerate(CUSTOMERS) if c["id"] == q["starting_after"]) + 1
    page = CUSTOMERS[start : start + limit]
    body = {"object": "list", "data": page, "has_more": start + limit < len(CUSTOMERS)}
    return 200, {}, json.dumps(body)


def test_after_last_walks_while_has_more(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.add_callback(responses.GET, API + "/v1/customers", callback=stripe_list)
    paginator = AfterLastPaginator(page_size=3)
    ids = walk(session, paginator, API + "/v1/customers")
    assert ids == [c["id"] for c in CUSTOMERS]
    asked = [query(c.request) for c in rsps.calls]
    assert asked == [
        {"limit": "3"},
        {"limit": "3", "starting_after": "cus_2"},
        {"limit": "3", "starting_after": "cus_5"},
    ]


def test_after_last_resumes_from_a_position(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.add_callback(responses.GET, API + "/v1/customers", callback=stripe_list)
    ids = walk(
        session, AfterLastPaginator("cus_3", page_size=10), API + "/v1/customers", path="data"
    )
    assert ids == ["cus_4", "cus_5", "cus_6"]


def test_after_last_without_has_more_field_stops_on_a_short_page(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.add_callback(responses.GET, API + "/v1/customers", callback=stripe_list)
    paginator = AfterLastPaginator(page_size=4, has_more=None)
    assert walk(session, paginator, API + "/v1/customers") == [c["id"] for c in CUSTOMERS]
    assert paginator.pages == 2


def test_after_last_loop_is_detected(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    # The provider ignores starting_after: the same page, with has_more, again and again.
    body = {"data": CUSTOMERS[:2], "has_more": True}
    rsps.get(API + "/v1/customers", json=body)
    with pytest.raises(PaginationLoopError, match="already sent"):
        walk(session, AfterLastPaginator(page_size=2), API + "/v1/customers")


# --- after_max (Discord) --------------------------------------------------------------------------

# Snowflakes as strings, of different lengths: compared as text, "999" > "1000" would be wrong.
SNOWFLAKES = ["999", "1000", "1001", "1002", "20000", "20001", "20002"]


def discord_list(request: requests.PreparedRequest) -> Reply:
    q = query(request)
    limit = int(q.get("limit", "50"))
    after = int(q.get("after", "0"))
    newer = [s for s in SNOWFLAKES if int(s) > after][:limit]
    # Discord lists the messages of an `after` page newest first.
    return 200, {}, json.dumps([{"id": s} for s in reversed(newer)])


def test_after_max_walks_by_the_greatest_snowflake(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.add_callback(responses.GET, API + "/channels/1/messages", callback=discord_list)
    paginator = AfterMaxPaginator(page_size=3)
    ids = walk(session, paginator, API + "/channels/1/messages", path=None)
    assert sorted(ids, key=int) == SNOWFLAKES
    asked = [query(c.request).get("after") for c in rsps.calls]
    assert asked == [None, "1001", "20001"]
    assert paginator.finished


def test_after_max_full_last_page_asks_one_empty_page(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.add_callback(responses.GET, API + "/channels/1/messages", callback=discord_list)
    paginator = AfterMaxPaginator(page_size=7)
    assert len(walk(session, paginator, API + "/channels/1/messages", path=None)) == 7
    assert paginator.pages == 2


def test_after_max_loop_is_detected(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(API + "/channels/1/messages", json=[{"id": "5"}, {"id": "6"}])
    with pytest.raises(PaginationLoopError):
        walk(session, AfterMaxPaginator(page_size=2), API + "/channels/1/messages", path=None)


def test_after_max_ignores_records_without_a_numeric_field(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(API + "/m", json=[{"id": "x"}, {"id": None}])
    paginator = AfterMaxPaginator(page_size=2)
    walk(session, paginator, API + "/m", path=None)
    assert paginator.finished and paginator.pages == 1


# --- next_url (Graph) -----------------------------------------------------------------------------

GRAPH = "https://graph.example.test/v1.0"


def test_next_url_follows_links_and_keeps_the_delta_link(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    first = GRAPH + "/teams/t/channels/c/messages/delta"
    rsps.get(
        first,
        json={"value": [{"id": "1"}], "@odata.nextLink": first + "?$skiptoken=A"},
        match=[responses.matchers.query_param_matcher({"$top": "2"})],
    )
    rsps.get(
        first,
        json={"value": [{"id": "2"}], "@odata.deltaLink": first + "?$deltatoken=D"},
        match=[responses.matchers.query_param_matcher({"$skiptoken": "A"})],
    )
    paginator = NextURLPaginator(page_size=2, final_field="@odata.deltaLink", size_param="$top")
    assert walk(session, paginator, first, path="value") == ["1", "2"]
    assert paginator.final_cursor == first + "?$deltatoken=D"
    # The next round starts at the delta link, with no params of its own.
    again = NextURLPaginator(paginator.final_cursor, final_field="@odata.deltaLink")
    assert again.request(first, {"x": "1"}) == (first + "?$deltatoken=D", {})


def test_next_url_refuses_another_origin(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(GRAPH + "/x", json={"value": [{"id": "1"}], "@odata.nextLink": "https://evil.test/x"})
    with pytest.raises(FatalError, match="another origin") as info:
        walk(session, NextURLPaginator(), GRAPH + "/x", path="value")
    assert "evil" not in str(info.value)


def test_next_url_refuses_a_start_on_another_origin() -> None:
    with pytest.raises(FatalError, match="another origin"):
        NextURLPaginator("https://evil.test/delta?token=1").request(GRAPH + "/x", {})


def test_next_url_loop_is_detected(rsps: responses.RequestsMock, session: requests.Session) -> None:
    rsps.get(GRAPH + "/x", json={"value": [{"id": "1"}], "@odata.nextLink": GRAPH + "/x?p=2"})
    with pytest.raises(PaginationLoopError):
        walk(session, NextURLPaginator(), GRAPH + "/x", path="value")


def test_next_url_relative_link_is_resolved(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(
        GRAPH + "/x",
        json={"value": [{"id": "1"}], "next": "/v1.0/x?p=2"},
        match=[responses.matchers.query_param_matcher({})],
    )
    rsps.get(
        GRAPH + "/x",
        json={"value": [{"id": "2"}]},
        match=[responses.matchers.query_param_matcher({"p": "2"})],
    )
    assert walk(session, NextURLPaginator(field="next"), GRAPH + "/x", path="value") == ["1", "2"]


def test_single_page_is_the_last(rsps: responses.RequestsMock, session: requests.Session) -> None:
    rsps.get(API + "/all", json={"data": [{"id": "a"}, {"id": "b"}], "next": "ignored"})
    paginator = SinglePagePaginator()
    assert walk(session, paginator, API + "/all") == ["a", "b"]
    assert paginator.finished and paginator.pages == 1


@pytest.mark.parametrize("last", [{"name": "no id"}, {"id": None}, {"id": ""}, "cus_9"])
def test_after_last_refuses_more_pages_it_cannot_reach(
    rsps: responses.RequestsMock, session: requests.Session, last: object
) -> None:
    # has_more says the listing goes on, but the last record gives no position to go on from:
    # finishing would end the run early and move the cursor past the records never read.
    rsps.get(API + "/v1/customers", json={"data": [{"id": "cus_1"}, last], "has_more": True})
    with pytest.raises(FatalError, match="has_more"):
        walk_raw(session, AfterLastPaginator(page_size=2), API + "/v1/customers")


def walk_raw(session: requests.Session, paginator: Paginator, url: str) -> None:
    while not paginator.finished:
        page_url, params = paginator.request(url, {})
        with session.get(page_url, params=params, timeout=5) as response:
            paginator.advance(response, response.json()["data"])
