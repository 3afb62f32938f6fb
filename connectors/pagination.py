"""Pagination styles as small classes, each able to checkpoint, resume and detect a loop.

A stream walks a listing with one :class:`Paginator`: it asks :meth:`Paginator.request` for the
URL and query parameters of the current page, sends the request itself (connectors own their
sessions, auth and retries), then hands the answer and its records to :meth:`Paginator.advance`,
until :attr:`Paginator.finished`. Modelled on the Singer SDK's ``pagination.py``.

``current_value`` is the token of the page about to be requested. It is JSON-serialisable (a
string, an integer or ``None`` for the first page) so a sync can store it as a checkpoint and a
later run can resume by building the same paginator with ``start_value=`` that checkpoint.

A provider that hands back a token already followed (A → B → A) would make a naive loop run
forever. A walk remembers (a digest of) the tokens it followed and raises
:class:`~errors.PaginationLoopError` when handed one again. A sync reads each page with a new
paginator, so its run remembers the positions it followed in the store instead, across its
tasks (``store.runs.follow_position``). The rule is the same: a position is a loop once it has
been *followed*; where a walk starts (``start_value``, the first page) does not count, so a page
read again after a retry or a resume is no loop.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

import requests

from spark_integrations.connectors.http import json_body
from spark_integrations.connectors.positions import describe_position
from spark_integrations.connectors.urlpolicy import same_origin
from spark_integrations.errors import FatalError, PaginationLoopError, RetriableError

__all__ = [
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextTokenPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "Paginator",
    "extract",
]

#: How many followed tokens a paginator remembers for loop detection (as 16-byte digests).
SEEN_TOKENS_LIMIT = 10_000


def extract(body: Any, path: str | None) -> Any:
    """Return the value at a dotted ``path`` inside a decoded JSON ``body``.

    ``None`` or ``""`` returns the body itself (a listing whose body is a top-level list). A
    numeric part indexes a list (``"data.0.id"``). A part that is missing, or that meets a value
    it cannot descend into, gives ``None`` rather than an exception: a missing ``next_cursor`` is
    how many providers say "last page", and the caller decides whether a missing records path is
    an error.

    Args:
        body: a decoded JSON document.
        path: dot-separated keys, such as ``"data"`` or ``"meta.next"``.

    Returns:
        The value found, or ``None``.
    """
    if not path:
        return body
    value = body
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _digest(value: Any) -> bytes:
    """A short, stable fingerprint of a token, so remembering thousands of them stays cheap."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _json_body(response: requests.Response, connector: str) -> Any:
    """The response's JSON body (decoded once per response: the connector read it first); a
    body that is not JSON is a provider fault worth retrying."""
    try:
        return json_body(response)
    except ValueError:
        who = connector or "the provider"
        raise RetriableError(
            f"{who} answered a page whose body is not JSON (status {response.status_code}).",
            connector=connector,
            status=response.status_code,
            response=response,
        ) from None


def _empty_to_none(value: Any) -> Any:
    """``None`` for the ways providers write "no next page": absent, null or an empty string."""
    return None if value is None or value == "" else value


def _stated_number(
    response: requests.Response, field: str, what: str, connector: str
) -> int | None:
    """The next offset or page number the provider states at ``field``: ``None`` when absent,
    null or empty; anything but a whole number >= 0 is a provider fault retrying cannot fix."""
    value = _empty_to_none(extract(_json_body(response, connector), field))
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise FatalError(
        f"{connector or 'the provider'} answered a next {what} that is not a whole number >= 0 "
        f"({describe_position(value)}).",
        connector=connector,
        status=response.status_code,
    )


class Paginator(ABC):
    """One walk through a paginated listing.

    Subclasses say where the token goes in a request (:meth:`page_params`, or :meth:`request`
    for a token that is a whole URL) and how to read the next one from an answer
    (:meth:`next_value`). This base class keeps the walk's state and detects loops.

    Attributes:
        current_value: the token of the page about to be requested (``None``: the first page).
            JSON-serialisable, so a sync can checkpoint it and resume from it.
        finished: ``True`` once the last page has been handed to :meth:`advance`.
        pages: how many pages :meth:`advance` has moved past so far.
        page_size: how many records a page is asked to hold.
        connector: the connector's name, for error messages.
    """

    def __init__(
        self, start_value: Any = None, *, page_size: int = 100, connector: str = ""
    ) -> None:
        """Start a walk at the first page, or resume it at ``start_value``.

        Args:
            start_value: a ``current_value`` saved by an earlier walk, or ``None``.
            page_size: how many records each page is asked to hold.
            connector: the connector's name, used in error messages.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1.")
        self.current_value: Any = start_value
        self.finished = False
        self.pages = 0
        self.page_size = page_size
        self.connector = connector
        # Digests of the tokens this walk followed; the start is not one (see the module doc).
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def __repr__(self) -> str:
        # current_value is left out: a Link header's URL may carry a credential in its query.
        return f"{type(self).__name__}(pages={self.pages}, finished={self.finished})"

    def request(self, url: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """URL and query params for the current page, given the stream's URL and base params.

        Args:
            url: the listing's URL.
            params: the stream's own query parameters (filters such as ``updated_since``).

        Returns:
            The URL to request and every query parameter, the paginator's included.

        Raises:
            RuntimeError: the walk is finished.
        """
        self._check_not_finished("request")
        return url, {**params, **self.page_params()}

    def page_params(self) -> dict[str, Any]:
        """Query parameters that select the current page and its size."""
        return {}

    def advance(self, response: requests.Response, records: Sequence[Any]) -> None:
        """Move to the next page, or finish.

        Args:
            response: the answer to the request built from :meth:`request`.
            records: the records read from that answer.

        Raises:
            PaginationLoopError: the next token was already followed in this walk.
            RuntimeError: the walk is already finished.
        """
        self._check_not_finished("advance")
        value = _empty_to_none(self.next_value(response, records))
        self.pages += 1
        if value is None:
            self.finished = True
            return
        if _digest(value) in self._seen:
            who = self.connector or "the provider"
            raise PaginationLoopError(
                f"{who} returned a page token it had already sent, after {self.pages} pages "
                f"({type(self).__name__}); stopping instead of looping forever.",
                connector=self.connector,
                status=response.status_code,
                response=response,
            )
        self._remember(value)
        self.current_value = value

    @abstractmethod
    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The token of the page after this one, or ``None`` when this was the last page."""

    def _remember(self, value: Any) -> None:
        """Add a token to the bounded set of tokens followed, forgetting the oldest."""
        self._seen[_digest(value)] = None
        if len(self._seen) > SEEN_TOKENS_LIMIT:
            self._seen.popitem(last=False)

    def _check_not_finished(self, method: str) -> None:
        if self.finished:
            raise RuntimeError(f"{method}() called on a finished {type(self).__name__}.")


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
        return extract(_json_body(response, self.connector), self.next_field)


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
            stated = _stated_number(response, self.next_field, "offset", self.connector)
            return stated if records else None
        if len(records) < self.page_size:
            return None
        following = self.offset + len(records)
        if self.total_field:
            total = extract(_json_body(response, self.connector), self.total_field)
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
            return _stated_number(response, self.next_field, "page number", self.connector)
        total = None
        if self.total_pages_field:
            total = extract(_json_body(response, self.connector), self.total_pages_field)
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


class NextTokenPaginator(Paginator):
    """A token read from the body and sent back, as AWS-style ``nextToken`` listings do.

    The token is absent, null or empty on the last page.
    """

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
        super().__init__(start_value, page_size=page_size, connector=connector)
        self.token_param = token_param
        self.next_field = next_field
        self.size_param = size_param

    def page_params(self) -> dict[str, Any]:
        """The token (not on the first page) and the page size."""
        params: dict[str, Any] = {}
        if self.current_value is not None:
            params[self.token_param] = self.current_value
        if self.size_param:
            params[self.size_param] = self.page_size
        return params

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The token at ``next_field`` (a dotted path), or ``None`` on the last page."""
        return extract(_json_body(response, self.connector), self.next_field)
