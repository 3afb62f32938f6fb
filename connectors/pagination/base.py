"""The walk every paginator shares: its state, its checkpoint and its loop detection.

See :mod:`connectors.pagination` for how a stream walks a listing.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from spark_integrations.connectors.http import json_body
from spark_integrations.connectors.positions import describe_position
from spark_integrations.errors import FatalError, PaginationLoopError, RetriableError

__all__ = [
    "SEEN_TOKENS_LIMIT",
    "Paginator",
    "extract",
    "json_page",
    "next_or_none",
    "stated_number",
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


def json_page(response: requests.Response, connector: str) -> Any:
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


def next_or_none(value: Any) -> Any:
    """``None`` for the ways providers write "no next page": absent, null or an empty string."""
    return None if value is None or value == "" else value


def stated_number(response: requests.Response, field: str, what: str, connector: str) -> int | None:
    """The next offset or page number the provider states at ``field``: ``None`` when absent,
    null or empty; anything but a whole number >= 0 is a provider fault retrying cannot fix."""
    value = next_or_none(extract(json_page(response, connector), field))
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
        value = next_or_none(self.next_value(response, records))
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
