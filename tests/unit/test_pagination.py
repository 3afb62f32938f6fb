"""The pagination styles against fake listings served by ``responses``: stops, resume, loops."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses

from spark_integrations.connectors import pagination, positions
from spark_integrations.connectors.pagination import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    extract,
)
from spark_integrations.connectors.positions import (
    describe_position,
    mask_url,
    position_loop_error,
)
from spark_integrations.errors import FatalError, PaginationLoopError, RetriableError
from tests.unit.cycles import LINK_KEY, STYLES, serve_cycle
from tests.unit.paging import (
    API,
    Reply,
    query,
    rsps_fixture,  # noqa: F401 - the rsps fixture
    session_fixture,  # noqa: F401 - the session fixture
    walk,
)


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"i{k:04d}"} for k in range(n)]


def serve(
    rsps: responses.RequestsMock, path: str, handler: Callable[[dict[str, str]], Any], **kw: Any
) -> None:
    """Serve ``API + path`` with a JSON body computed from the query parameters."""

    def callback(request: requests.PreparedRequest) -> Reply:
        result = handler(query(request))
        body, headers = result if isinstance(result, tuple) else (result, {})
        return 200, headers, json.dumps(body)

    rsps.add_callback(responses.GET, API + path, callback=callback, **kw)


def sent(rsps: responses.RequestsMock) -> list[dict[str, str]]:
    return [query(call.request) for call in rsps.calls]


# --- extract --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (None, {"data": [1], "meta": {"next": "n", "pages": [{"id": 7}]}}),
        ("", {"data": [1], "meta": {"next": "n", "pages": [{"id": 7}]}}),
        ("data", [1]),
        ("meta.next", "n"),
        ("meta.pages.0.id", 7),
        ("meta.pages.3.id", None),
        ("meta.missing", None),
        ("missing.deeper", None),
        ("meta.next.deeper", None),
    ],
)
def test_extract_dotted_paths(path: str | None, expected: Any) -> None:
    body = {"data": [1], "meta": {"next": "n", "pages": [{"id": 7}]}}
    assert extract(body, path) == expected


def test_extract_top_level_list() -> None:
    assert extract([{"id": 1}], None) == [{"id": 1}]
    assert extract([{"id": 1}], "0.id") == 1


# --- cursor ---------------------------------------------------------------------------------------


def cursor_api(records: list[dict[str, Any]], next_field: str = "next_cursor") -> Any:
    def handler(q: dict[str, str]) -> Any:
        start = int(q.get("cursor", "c0")[1:])
        limit = int(q["limit"])
        page = records[start : start + limit]
        following = f"c{start + limit}" if start + limit < len(records) else None
        body: dict[str, Any] = {"data": page}
        if "." in next_field:
            outer, inner = next_field.split(".")
            body[outer] = {inner: following}
        else:
            body[next_field] = following
        return body

    return handler


def test_cursor_walks_every_page(rsps: responses.RequestsMock, session: requests.Session) -> None:
    serve(rsps, "/items", cursor_api(items(250)))
    paginator = CursorPaginator()
    ids = walk(session, paginator, API + "/items", {"updated_since": "2024-01-01"})
    assert ids == [r["id"] for r in items(250)]
    assert paginator.pages == 3 and paginator.finished
    assert sent(rsps) == [
        {"updated_since": "2024-01-01", "limit": "100"},
        {"updated_since": "2024-01-01", "limit": "100", "cursor": "c100"},
        {"updated_since": "2024-01-01", "limit": "100", "cursor": "c200"},
    ]


def test_cursor_request_output() -> None:
    paginator = CursorPaginator(page_size=25, cursor_param="after", limit_param="size")
    assert paginator.request(API + "/x", {"q": 1}) == (API + "/x", {"q": 1, "size": 25})
    resumed = CursorPaginator("abc", limit_param=None)
    assert resumed.request(API + "/x", {}) == (API + "/x", {"cursor": "abc"})


def test_cursor_dotted_next_field(rsps: responses.RequestsMock, session: requests.Session) -> None:
    serve(rsps, "/items", cursor_api(items(120), next_field="meta.next"))
    paginator = CursorPaginator(next_field="meta.next", page_size=50)
    assert walk(session, paginator, API + "/items") == [r["id"] for r in items(120)]
    assert paginator.pages == 3


@pytest.mark.parametrize("last", [None, "", "absent"])
def test_cursor_stops_on_null_empty_or_absent(
    rsps: responses.RequestsMock, session: requests.Session, last: str | None
) -> None:
    body: dict[str, Any] = {"data": items(3)}
    if last != "absent":
        body["next_cursor"] = last
    rsps.get(API + "/items", json=body)
    paginator = CursorPaginator()
    assert len(walk(session, paginator, API + "/items")) == 3
    assert paginator.finished and paginator.current_value is None and paginator.pages == 1


def test_cursor_resumes_from_start_value(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", cursor_api(items(250)))
    first = CursorPaginator()
    url, params = first.request(API + "/items", {})
    with session.get(url, params=params) as response:
        first.advance(response, response.json()["data"])
    checkpoint = json.loads(json.dumps(first.current_value))
    assert checkpoint == "c100"

    resumed = CursorPaginator(checkpoint)
    ids = walk(session, resumed, API + "/items")
    assert ids == [r["id"] for r in items(250)[100:]]
    assert sent(rsps)[1] == {"cursor": "c100", "limit": "100"}


def test_cursor_repeat_raises_loop_error(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    # A provider bug: page 3 hands back page 2's cursor.
    cursors = {"": "c1", "c1": "c2", "c2": "c1"}
    serve(rsps, "/items", lambda q: {"data": items(2), "next_cursor": cursors[q.get("cursor", "")]})
    paginator = CursorPaginator(connector="acme")
    with pytest.raises(PaginationLoopError) as info:
        walk(session, paginator, API + "/items")
    assert "returned a page token it had already sent" in str(info.value)
    assert "c1" not in str(info.value)
    assert isinstance(info.value, FatalError)
    assert info.value.connector == "acme" and info.value.status == 200
    assert len(rsps.calls) == 3


def test_empty_page_with_repeating_token_does_not_loop(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(API + "/items", json={"data": [], "next_cursor": "same"})
    with pytest.raises(PaginationLoopError):
        walk(session, CursorPaginator(), API + "/items")
    assert len(rsps.calls) == 2


def test_a_resumed_walk_counts_its_start_once_followed(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    # Where a walk starts is not followed yet: a page read again after a resume is no loop
    # (a sync's run remembers what it followed in the store). Followed once, it is one.
    rsps.get(API + "/items", json={"data": items(1), "next_cursor": "c5"})
    with pytest.raises(PaginationLoopError):
        walk(session, CursorPaginator("c5"), API + "/items")
    assert len(rsps.calls) == 2


def test_advance_or_request_after_finish_raise(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(API + "/items", json={"data": [], "next_cursor": None})
    paginator = CursorPaginator()
    walk(session, paginator, API + "/items")
    with session.get(API + "/items") as response, pytest.raises(RuntimeError, match="finished"):
        paginator.advance(response, [])
    with pytest.raises(RuntimeError, match="finished"):
        paginator.request(API + "/items", {})


def test_body_that_is_not_json_is_retriable(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(API + "/items", body="<html>oops</html>", status=200)
    paginator = CursorPaginator(connector="acme")
    with session.get(API + "/items") as response, pytest.raises(RetriableError) as info:
        paginator.advance(response, [])
    assert "acme" in str(info.value) and "not JSON" in str(info.value)


def test_seen_tokens_are_bounded(
    monkeypatch: pytest.MonkeyPatch, rsps: responses.RequestsMock, session: requests.Session
) -> None:
    monkeypatch.setattr(pagination.base, "SEEN_TOKENS_LIMIT", 5)
    serve(rsps, "/items", cursor_api(items(40)))
    paginator = CursorPaginator(page_size=2)
    assert len(walk(session, paginator, API + "/items")) == 40
    assert len(paginator._seen) == 5


def test_page_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="page_size"):
        CursorPaginator(page_size=0)


def test_repr_hides_the_token() -> None:
    paginator = LinkHeaderPaginator(API + "/items?api_key=secret&page=2")
    assert "secret" not in repr(paginator)
    assert repr(paginator) == "LinkHeaderPaginator(pages=0, finished=False)"


# --- offset ---------------------------------------------------------------------------------------


def offset_api(records: list[dict[str, Any]], with_total: bool = True) -> Any:
    def handler(q: dict[str, str]) -> Any:
        offset, limit = int(q["offset"]), int(q["limit"])
        body: dict[str, Any] = {"data": records[offset : offset + limit], "offset": offset}
        if with_total:
            body["total"] = len(records)
        return body

    return handler


def test_offset_stops_on_short_page(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", offset_api(items(250)))
    paginator = OffsetPaginator()
    assert walk(session, paginator, API + "/items") == [r["id"] for r in items(250)]
    assert [q["offset"] for q in sent(rsps)] == ["0", "100", "200"]
    assert all(q["limit"] == "100" for q in sent(rsps))


def test_offset_stops_at_total_without_an_empty_page(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", offset_api(items(200)))
    paginator = OffsetPaginator()
    assert len(walk(session, paginator, API + "/items")) == 200
    assert paginator.pages == 2 and len(rsps.calls) == 2


def test_offset_without_total_asks_one_empty_page(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", offset_api(items(200), with_total=False))
    paginator = OffsetPaginator()
    assert len(walk(session, paginator, API + "/items")) == 200
    assert paginator.pages == 3


def test_offset_total_field_can_be_ignored(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", offset_api(items(200)))
    paginator = OffsetPaginator(total_field=None)
    assert len(walk(session, paginator, API + "/items")) == 200
    assert paginator.pages == 3


def test_offset_custom_names_and_resume(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    def handler(q: dict[str, str]) -> Any:
        start, size = int(q["skip"]), int(q["take"])
        return {"items": items(95)[start : start + size], "meta": {"count": 95}}

    serve(rsps, "/items", handler)
    paginator = OffsetPaginator(
        30,
        page_size=30,
        offset_param="skip",
        limit_param="take",
        total_field="meta.count",
    )
    assert paginator.request(API + "/items", {}) == (API + "/items", {"skip": 30, "take": 30})
    ids = walk(session, paginator, API + "/items", path="items")
    assert ids == [r["id"] for r in items(95)[30:]]
    assert paginator.current_value == 90


# --- page number ----------------------------------------------------------------------------------


def page_api(records: list[dict[str, Any]], with_total: bool = True, first: int = 1) -> Any:
    def handler(q: dict[str, str]) -> Any:
        page, size = int(q["page"]), int(q["per_page"])
        start = (page - first) * size
        body: dict[str, Any] = {"data": records[start : start + size], "page": page}
        if with_total:
            body["total_pages"] = -(-len(records) // size)
        return body

    return handler


def test_page_number_stops_after_total_pages(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", page_api(items(300)))
    paginator = PageNumberPaginator()
    assert walk(session, paginator, API + "/items") == [r["id"] for r in items(300)]
    assert [(q["page"], q["per_page"]) for q in sent(rsps)] == [
        ("1", "100"),
        ("2", "100"),
        ("3", "100"),
    ]


def test_page_number_without_total_stops_on_short_page(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", page_api(items(250), with_total=False))
    paginator = PageNumberPaginator()
    assert len(walk(session, paginator, API + "/items")) == 250
    assert paginator.pages == 3


def test_page_number_without_total_ends_on_empty_page(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", page_api(items(200), with_total=False))
    paginator = PageNumberPaginator()
    assert len(walk(session, paginator, API + "/items")) == 200
    assert paginator.pages == 3


def test_page_number_empty_page_ends_despite_wrong_total(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(API + "/items", json={"data": [], "total_pages": 99})
    paginator = PageNumberPaginator()
    assert walk(session, paginator, API + "/items") == []
    assert paginator.pages == 1


def test_page_number_zero_based_and_resume(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    serve(rsps, "/items", page_api(items(50), first=0))
    paginator = PageNumberPaginator(start_page=0, page_size=10)
    assert paginator.request(API + "/items", {}) == (API + "/items", {"page": 0, "per_page": 10})
    assert len(walk(session, paginator, API + "/items")) == 50
    assert paginator.pages == 5

    resumed = PageNumberPaginator(3, start_page=0, page_size=10)
    assert walk(session, resumed, API + "/items") == [r["id"] for r in items(50)[30:]]


# --- link header ----------------------------------------------------------------------------------


def link_api(records: list[dict[str, Any]], size: int, relative: bool = False) -> Any:
    def handler(q: dict[str, str]) -> Any:
        page = int(q.get("page", "1"))
        start = (page - 1) * size
        headers = {}
        if start + size < len(records):
            base = "/items/by-link" if relative else f"{API}/items/by-link"
            following = f"{base}?page={page + 1}&sig=a%2Fb"
            headers["Link"] = f'<{following}>; rel="next", <{API}/items/by-link>; rel="first"'
        return records[start : start + size], headers

    return handler


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_link_header_follows_next(
    rsps: responses.RequestsMock, session: requests.Session, relative: bool
) -> None:
    serve(rsps, "/items/by-link", link_api(items(25), 10, relative=relative))
    paginator = LinkHeaderPaginator()
    first = paginator.request(API + "/items/by-link", {"updated_since": "x"})
    assert first == (API + "/items/by-link", {"updated_since": "x"})
    ids = walk(session, paginator, API + "/items/by-link", {"updated_since": "x"}, path=None)
    assert ids == [r["id"] for r in items(25)]
    assert paginator.pages == 3
    urls = [call.request.url for call in rsps.calls]
    assert urls[1:] == [
        f"{API}/items/by-link?page=2&sig=a%2Fb",
        f"{API}/items/by-link?page=3&sig=a%2Fb",
    ]


def test_link_header_request_uses_the_link_alone() -> None:
    paginator = LinkHeaderPaginator(f"{API}/items?page=4", size_param="per_page")
    assert paginator.request(API + "/items", {"q": "1"}) == (f"{API}/items?page=4", {})
    first = LinkHeaderPaginator(size_param="per_page", page_size=20)
    assert first.request(API + "/items", {"q": "1"}) == (API + "/items", {"q": "1", "per_page": 20})


def test_link_header_repeat_raises_loop_error(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(API + "/items", json=items(1), headers={"Link": f'<{API}/items?page=2>; rel="next"'})
    with pytest.raises(PaginationLoopError):
        walk(session, LinkHeaderPaginator(), API + "/items", path=None)
    assert len(rsps.calls) == 2


def test_link_back_to_first_page_is_a_loop_once_followed(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    rsps.get(API + "/items", json=items(1), headers={"Link": f'<{API}/items>; rel="next"'})
    with pytest.raises(PaginationLoopError):
        walk(session, LinkHeaderPaginator(), API + "/items", path=None)
    assert len(rsps.calls) == 2


def test_link_header_absent_ends(rsps: responses.RequestsMock, session: requests.Session) -> None:
    rsps.get(API + "/items", json=items(2), headers={"Link": f'<{API}/items>; rel="prev"'})
    paginator = LinkHeaderPaginator()
    assert len(walk(session, paginator, API + "/items", path=None)) == 2
    assert paginator.finished and paginator.pages == 1


# --- next token -----------------------------------------------------------------------------------


def token_api(records: list[dict[str, Any]], last: str) -> Any:
    def handler(q: dict[str, str]) -> Any:
        start = int(q.get("next_token", "t0")[1:])
        size = int(q["max_results"])
        body: dict[str, Any] = {"items": records[start : start + size]}
        if start + size < len(records):
            body["nextToken"] = f"t{start + size}"
        elif last != "absent":
            body["nextToken"] = None if last == "null" else ""
        return body

    return handler


@pytest.mark.parametrize("last", ["absent", "null", "empty"])
def test_next_token_walks_every_page(
    rsps: responses.RequestsMock, session: requests.Session, last: str
) -> None:
    serve(rsps, "/items", token_api(items(130), last))
    paginator = NextTokenPaginator(page_size=50)
    assert walk(session, paginator, API + "/items", path="items") == [r["id"] for r in items(130)]
    assert sent(rsps) == [
        {"max_results": "50"},
        {"max_results": "50", "next_token": "t50"},
        {"max_results": "50", "next_token": "t100"},
    ]


def test_next_token_resume_and_custom_names(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    def handler(q: dict[str, str]) -> Any:
        start = int(q.get("pageToken", "t0")[1:])
        page = items(30)[start : start + 10]
        return {"items": page, "page": {"next": f"t{start + 10}" if start + 10 < 30 else None}}

    serve(rsps, "/items", handler)
    paginator = NextTokenPaginator(
        "t10", page_size=10, token_param="pageToken", next_field="page.next", size_param=None
    )
    assert paginator.request(API + "/items", {}) == (API + "/items", {"pageToken": "t10"})
    assert walk(session, paginator, API + "/items", path="items") == [
        r["id"] for r in items(30)[10:]
    ]


def test_next_token_repeat_raises_loop_error(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    tokens = {"": "a", "a": "b", "b": "c", "c": "a"}
    serve(rsps, "/items", lambda q: {"items": [], "nextToken": tokens[q.get("next_token", "")]})
    with pytest.raises(PaginationLoopError, match="already sent"):
        walk(session, NextTokenPaginator(), API + "/items", path="items")
    assert len(rsps.calls) == 4


# --- a provider states the next offset or page number ---------------------------------------------


def test_offset_follows_the_next_offset_the_provider_states(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    def handler(q: dict[str, str]) -> Any:
        # Pages of 30 asked, 25 given: a short page ends no walk while the provider says more.
        start = int(q["offset"])
        following = start + 25 if start + 25 < 75 else None
        return {"data": items(75)[start : start + 25], "additional": {"next_start": following}}

    serve(rsps, "/items", handler)
    paginator = OffsetPaginator(page_size=30, next_field="additional.next_start")
    assert walk(session, paginator, API + "/items") == [r["id"] for r in items(75)]
    assert [q["offset"] for q in sent(rsps)] == ["0", "25", "50"]


def test_page_number_follows_the_next_page_the_provider_states(
    rsps: responses.RequestsMock, session: requests.Session
) -> None:
    pages = {"1": 3, "3": 7, "7": None}  # a provider skipping numbers still ends
    serve(rsps, "/items", lambda q: {"data": items(2), "next_page": pages[q["page"]]})
    paginator = PageNumberPaginator(next_field="next_page")
    assert len(walk(session, paginator, API + "/items")) == 6
    assert [q["page"] for q in sent(rsps)] == ["1", "3", "7"]


@pytest.mark.parametrize("style", ["offset", "page"])
def test_a_stated_next_position_on_an_empty_page_ends_the_walk(
    rsps: responses.RequestsMock, session: requests.Session, style: str
) -> None:
    rsps.get(API + "/items", json={"data": [], "next": 5})
    paginator = (
        OffsetPaginator(next_field="next")
        if style == "offset"
        else PageNumberPaginator(next_field="next")
    )
    assert walk(session, paginator, API + "/items") == [] and paginator.finished


@pytest.mark.parametrize("bad", ["7", -1, 2.5, True, {"n": 1}])
@pytest.mark.parametrize("style", ["offset", "page"])
def test_a_stated_next_position_that_is_no_whole_number_is_fatal(
    rsps: responses.RequestsMock, session: requests.Session, style: str, bad: Any
) -> None:
    rsps.get(API + "/items", json={"data": items(2), "next": bad})
    paginator = (
        OffsetPaginator(next_field="next", connector="acme")
        if style == "offset"
        else PageNumberPaginator(next_field="next", connector="acme")
    )
    with pytest.raises(FatalError, match=r"acme answered a next .* not a whole number") as info:
        walk(session, paginator, API + "/items")
    assert not isinstance(info.value, PaginationLoopError)


# --- cycles: every style, lengths 1 to 3 ----------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 3])
@pytest.mark.parametrize("style", list(STYLES))
def test_every_style_stops_at_a_cycle_in_one_walk(
    rsps: responses.RequestsMock, session: requests.Session, style: str, length: int
) -> None:
    """Page 4 hands back the position of page 5 - length: the walk has followed it, so the
    walk raises after page 4 instead of asking page 5 - length again."""
    asked = serve_cycle(rsps, style, at=4, length=length)
    make, options, path = STYLES[style]
    paginator = make(page_size=2, connector="acme", **options)
    with pytest.raises(PaginationLoopError, match="acme returned a page token it had already"):
        walk(session, paginator, f"{API}/{style}", path=path)
    assert asked() == [1, 2, 3, 4]
    assert paginator.pages == 4 and not paginator.finished


# --- positions in messages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://api.test/items?after=abc&api_key=k1&limit=5",
            "https://api.test/items?after=abc&api_key=***&limit=5",
        ),
        (
            "https://u:pw@api.test/x?X-Amz-Signature=s&X-Amz-Credential=c&X-Amz-Security-Token=t",
            "https://u:***@api.test/x?X-Amz-Signature=***&X-Amz-Credential=***"
            "&X-Amz-Security-Token=***",
        ),
        (
            "https://api.test/x?accessToken=a&client_secret=b&key=c&sig=d&token=e&pageToken=p"
            "&next_token=n&cursor=z",
            "https://api.test/x?accessToken=***&client_secret=***&key=***&sig=***&token=***"
            "&pageToken=p&next_token=n&cursor=z",
        ),
        ("https://api.test/items?page=2", "https://api.test/items?page=2"),
    ],
)
def test_a_url_shown_masks_its_credentials(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert describe_position(url) == f'"{shown}"'


def test_positions_are_shown_as_json_and_cut_short() -> None:
    assert describe_position(40) == "40"
    assert describe_position("c5") == '"c5"'
    assert describe_position({"b": 1, "a": "x"}) == '{"a": "x", "b": 1}'
    long = describe_position("x" * 1000)
    assert len(long) == positions.SHOWN_POSITION_CHARS and long.endswith("…")
    # Not a URL after all: nothing of it is shown.
    assert describe_position("https://[api.test/x?api_key=k") == '"(an unparsable URL)"'


def test_the_loop_sentence_names_the_stream_the_position_and_the_cycle() -> None:
    sentence = position_loop_error(
        connector="acme",
        stream="issues",
        position=f"https://api.test/issues?page=3&api_key={LINK_KEY}",
        page=5,
        first_page=2,
    )
    assert sentence.startswith("acme's issues stream loops: page 5 of the run handed back")
    assert '"https://api.test/issues?page=3&api_key=***"' in sentence
    assert "which page 2 had handed back already (a cycle of 3 pages)" in sentence
    assert sentence.endswith("the run stops with the 5 pages it read committed.")
    assert LINK_KEY not in sentence
    one = position_loop_error(connector="a", stream="s", position="c1", page=1, first_page=0)
    assert "(a cycle of 1 page)" in one and "the 1 page it read" in one
