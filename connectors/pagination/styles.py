"""The pagination styles: cursor, next token, offset, page number and ``Link`` header."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

import requests

from spark_integrations.connectors.pagination.base import (
    Paginator,
    extract,
    json_page,
    stated_number,
)
from spark_integrations.connectors.urlpolicy import same_origin
from spark_integrations.errors import FatalError

__all__ = [
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextTokenPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "SinglePagePaginator",
]


class CursorPaginator(Paginator):
    """An opaque cursor read from the body, sent back as a query parameter.

    The body looks like ``{"data": [...], "next_cursor": "..." | null}``; ``next_field`` may be
    a dotted path such as ``"meta.next"``.
    """

    def __init__(
        self,
        start_value: Any = None,
        *,
        page_size: int = 100,
        connector: str = "",
        cursor_param: str = "cursor",
        next_field: str = "next_cursor",
        limit_param: str | None = "limit",
    ) -> None:
        """Configure where the cursor is read and sent; ``limit_param=None`` sends no size."""
        super().__init__(start_value, page_size=page_size, connector=connector)
        self.cursor_param = cursor_param
        self.next_field = next_field
        self.limit_param = limit_param

    def page_params(self) -> dict[str, Any]:
        """The cursor (not on the first page) and the page size."""
        params: dict[str, Any] = {}
        if self.current_value is not None:
            params[self.cursor_param] = self.current_value
        if self.limit_param:
            params[self.limit_param] = self.page_size
        return params

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The cursor at ``next_field``; absent, null or empty on the last page."""
        return extract(json_page(response, self.connector), self.next_field)


class OffsetPaginator(Paginator):
    """An offset into the listing and a limit, as in ``?offset=200&limit=100``.

    There are more pages while a page comes back full; when the body carries the listing's size
    at ``total_field``, the walk also stops once the offset reaches it, sparing one empty page.
    A provider that states the next page's offset itself (Pipedrive's ``next_start``) is
    followed instead with ``next_field``: absent or null on the last page; an empty page ends
    the walk whatever it says.
    """

    def __init__(
        self,
        start_value: Any = None,
        *,
        page_size: int = 100,
        connector: str = "",
        offset_param: str = "offset",
        limit_param: str = "limit",
        total_field: str | None = "total",
        next_field: str | None = None,
    ) -> None:
        """Configure the parameter names; ``total_field=None`` ignores any total in the body;
        ``next_field`` (a dotted path) reads the next offset from the body."""
        super().__init__(start_value, page_size=page_size, connector=connector)
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.total_field = total_field
        self.next_field = next_field

    @property
    def offset(self) -> int:
        """The offset of the page about to be requested."""
        return int(self.current_value or 0)

    def page_params(self) -> dict[str, Any]:
        """The offset and the limit."""
        return {self.offset_param: self.offset, self.limit_param: self.page_size}

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The offset after this page, or ``None`` after a short page or at the total."""
        if self.next_field:
            stated = stated_number(response, self.next_field, "offset", self.connector)
            return stated if records else None
        if len(records) < self.page_size:
            return None
        following = self.offset + len(records)
        if self.total_field:
            total = extract(json_page(response, self.connector), self.total_field)
            if isinstance(total, int) and not isinstance(total, bool) and following >= total:
                return None
        return following


class PageNumberPaginator(Paginator):
    """A page number and a page size, as in ``?page=3&per_page=100``.

    When the body says how many pages there are (``total_pages_field``), the walk stops after
    the last one; otherwise it stops after a page that comes back short. A provider that states
    the next page's number itself (``"next_page": 4``) is followed instead with ``next_field``:
    absent or null on the last page. An empty page always ends the walk, so a total or a next
    page that is wrong cannot make it run on without records.
    """

    def __init__(
        self,
        start_value: Any = None,
        *,
        page_size: int = 100,
        connector: str = "",
        page_param: str = "page",
        size_param: str | None = "per_page",
        start_page: int = 1,
        total_pages_field: str | None = "total_pages",
        next_field: str | None = None,
    ) -> None:
        """Configure the parameter names and the first page's number (0 or 1, usually);
        ``next_field`` (a dotted path) reads the next page's number from the body."""
        super().__init__(start_value, page_size=page_size, connector=connector)
        self.page_param = page_param
        self.size_param = size_param
        self.start_page = start_page
        self.total_pages_field = total_pages_field
        self.next_field = next_field

    @property
    def page(self) -> int:
        """The number of the page about to be requested."""
        return self.start_page if self.current_value is None else int(self.current_value)

    def page_params(self) -> dict[str, Any]:
        """The page number and, when configured, the page size."""
        params: dict[str, Any] = {self.page_param: self.page}
        if self.size_param:
            params[self.size_param] = self.page_size
        return params

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The next page's number, or ``None`` after the last page."""
        if not records:
            return None
        if self.next_field:
            return stated_number(response, self.next_field, "page number", self.connector)
        total = None
        if self.total_pages_field:
            total = extract(json_page(response, self.connector), self.total_pages_field)
        if isinstance(total, int) and not isinstance(total, bool):
            # Pages are counted from start_page, so the last one is start_page + total - 1.
            last = self.start_page + total - 1
            return None if self.page >= last else self.page + 1
        return None if len(records) < self.page_size else self.page + 1


class LinkHeaderPaginator(Paginator):
    """The RFC 8288 ``Link: <url>; rel="next"`` header, as GitHub and many others send.

    The token is the next page's URL itself: the first request uses the stream's URL and params,
    every later one the link alone, which carries its own query. A relative link is resolved
    against the URL of the answer that gave it. A link back to the first page is a loop once it
    has been followed (the first page's URL is not a token: the same listing may be asked again).
    """

    def __init__(
        self,
        start_value: Any = None,
        *,
        page_size: int = 100,
        connector: str = "",
        size_param: str | None = None,
        rel: str = "next",
    ) -> None:
        """Configure the relation followed and, when the provider takes one, the size param."""
        super().__init__(start_value, page_size=page_size, connector=connector)
        self.size_param = size_param
        self.rel = rel

    def request(self, url: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The stream's URL and params on the first page, then the link with no extra params."""
        self._check_not_finished("request")
        if self.current_value is None:
            extra = {self.size_param: self.page_size} if self.size_param else {}
            return url, {**params, **extra}
        return _own_origin(str(self.current_value), url, self.connector), {}

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The absolute URL of the ``rel="next"`` link, or ``None`` when there is none."""
        link = response.links.get(self.rel, {}).get("url")
        if not link:
            return None
        following = urljoin(response.url or "", link)
        return (
            _own_origin(following, response.url or "", self.connector)
            if response.url
            else following
        )


def _own_origin(link: str, origin_url: str, connector: str) -> str:
    """``link`` when it is on the origin of ``origin_url`` (the connection's own), else a
    :class:`FatalError`: a provider's answer never sends the connection's credentials elsewhere.
    The link is not quoted (it may carry a credential)."""
    if same_origin(link, origin_url):
        return link
    who = connector or "the provider"
    raise FatalError(
        f"{who} handed back a next-page link to another origin; next links are followed on "
        "the connection's own origin only.",
        connector=connector,
    )


class NextTokenPaginator(CursorPaginator):
    """A token read from the body and sent back, as AWS-style ``nextToken`` listings do: a
    cursor under other names. The token is absent, null or empty on the last page."""

    def __init__(
        self,
        start_value: Any = None,
        *,
        page_size: int = 100,
        connector: str = "",
        token_param: str = "next_token",
        next_field: str = "nextToken",
        size_param: str | None = "max_results",
    ) -> None:
        """Configure where the token is read and sent; ``size_param=None`` sends no size."""
        super().__init__(
            start_value,
            page_size=page_size,
            connector=connector,
            cursor_param=token_param,
            next_field=next_field,
            limit_param=size_param,
        )


class SinglePagePaginator(Paginator):
    """A listing that fits in one answer: the first page is the last."""

    def __init__(
        self, start_value: Any = None, *, page_size: int = 100, connector: str = ""
    ) -> None:
        """No options: nothing selects a page."""
        super().__init__(start_value, page_size=page_size, connector=connector)

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """Never a next page."""
        return None
