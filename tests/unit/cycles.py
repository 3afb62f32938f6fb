"""Fake listings that may loop, one per pagination style, served by ``responses``.

Page ``n`` of a listing holds two records; page ``at`` hands back, as its next position, the
position of page ``at - length + 1``: a pagination cycle of ``length`` pages (``length=1``: the
page points to itself). Positions are those the style's paginator holds for page ``n``:
``c<n>`` cursors, ``t<n>`` tokens, offsets ``2 * (n - 1)``, page numbers ``n``, and next links
that carry a credential in their query (``api_key``), which a message must mask.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.pagination import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
)
from spark_integrations.connectors.streams import Stream

API = "https://api.example.test"
LINK_KEY = "s3cr3t-link-key"
PER_PAGE = 2

#: Each style: its paginator, the options the fake listing needs, where the records are.
STYLES: dict[str, tuple[type[Paginator], dict[str, Any], str | None]] = {
    "cursor": (CursorPaginator, {}, "data"),
    "offset": (OffsetPaginator, {"next_field": "next_offset"}, "data"),
    "page": (PageNumberPaginator, {"next_field": "next_page"}, "data"),
    "link": (LinkHeaderPaginator, {"size_param": "limit"}, None),
    "token": (NextTokenPaginator, {}, "items"),
}


def position(style: str, n: int) -> Any:
    """The position a paginator of ``style`` holds for page ``n`` (``None`` for page 1)."""
    if n == 1:
        return None
    return {
        "cursor": f"c{n}",
        "offset": PER_PAGE * (n - 1),
        "page": n,
        "link": f"{API}/link?page={n}&api_key={LINK_KEY}",
        "token": f"t{n}",
    }[style]


def _page_asked(style: str, query: dict[str, str]) -> int:
    text = {
        "cursor": query.get("cursor", "c1")[1:],
        "offset": str(int(query.get("offset", "0")) // PER_PAGE + 1),
        "page": query.get("page", "1"),
        "link": query.get("page", "1"),
        "token": query.get("next_token", "t1")[1:],
    }[style]
    return int(text)


def _answer(style: str, n: int, following: int | None) -> tuple[Any, dict[str, str]]:
    rows = [{"id": f"{style}-{n}-{k}"} for k in range(PER_PAGE)]
    after = None if following is None else position(style, following)
    if style == "link":
        return rows, {} if after is None else {"Link": f'<{after}>; rel="next"'}
    key = {"cursor": "next_cursor", "offset": "next_offset", "page": "next_page"}
    if style == "token":
        return {"items": rows, **({} if after is None else {"nextToken": after})}, {}
    return {"data": rows, key[style]: after}, {}


def serve_cycle(
    rsps: responses.RequestsMock, style: str, *, at: int, length: int = 1, last: int = 0
) -> Callable[[], list[int]]:
    """Serve ``style``'s listing at ``API/<style>`` with a cycle of ``length`` pages at page
    ``at`` (none when ``at`` is 0), ending at page ``last`` (never when 0); returns a function
    listing the pages asked so far, in order."""
    assert at == 0 or 1 <= length < at, "the cycle goes back to page 2 at the earliest"
    asked: list[int] = []

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        n = _page_asked(style, query)
        asked.append(n)
        following = None if n == last else at - length + 1 if n == at else n + 1
        body, headers = _answer(style, n, following)
        return 200, headers, json.dumps(body)

    rsps.add_callback(responses.GET, f"{API}/{style}", callback=callback)
    return lambda: list(asked)


class Loopy(Connector):
    """A provider with one stream per pagination style, at ``API/<style>``."""

    name = "loopy"
    streams: ClassVar[tuple[Stream, ...]] = tuple(
        Stream(
            style,
            f"/{style}",
            primary_key="id",
            paginator=paginator,
            paginator_options=options,
            records_path=path,
            page_size=PER_PAGE,
        )
        for style, (paginator, options, path) in STYLES.items()
    )


def loopy() -> Loopy:
    """A client of the fake provider."""
    return Loopy({"base_url": API}, {})
