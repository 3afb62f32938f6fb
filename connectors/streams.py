"""Streams: listings a sync reads page by page, resumable at any page.

A connector declares its streams (``Connector.streams``); :meth:`Connector.read_page` reads one
page of one, given where the last committed page left off. A sync commits each page's records
and the position after it together, so a run killed at any point resumes at the next page: no
gap, and a repeated page is absorbed by an upsert on the primary key.

Incremental streams filter on a *replication key*, a field that grows whenever a record changes
(``updated_at``). The filter is inclusive (``updated_since`` means ``>=``): records updated at the
very instant of the last cursor are read again rather than lost, and the upsert drops the
repeats. A *lookback* re-reads a window before the cursor, for providers whose timestamps are
not strictly ordered with their commits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from spark_integrations.connectors.pagination import CursorPaginator, Paginator

__all__ = ["Page", "Stream", "since_for"]


@dataclass(frozen=True)
class Stream:
    """One listing of a provider, as a sync reads it.

    Attributes:
        name: the stream's name (``syncs add CONNECTION STREAM``).
        path: the listing's path under the base URL.
        primary_key: the field that identifies a record (dotted for nested fields).
        replication_key: a field that grows whenever a record changes, ordered like the
            listing; ``None`` for a stream that can only be read in full.
        since_param: the query parameter filtering on the replication key, inclusive;
            ``None`` when the provider cannot filter (then every run reads everything).
        paginator: builds the paginator (``start_value``, ``page_size`` and ``connector``
            are passed as keywords, with ``paginator_options``).
        records_path: where the records are in a page's JSON body (``None``: the body).
        page_size: how many records a page is asked to hold.
        lookback: seconds re-read before the cursor on each incremental run.
        params: more query parameters of every page.
        budget: the connector's rate tier this stream's pages draw from (``tiers``), or
            ``None`` for the connection's own budget.
    """

    name: str
    path: str
    primary_key: str
    replication_key: str | None = None
    since_param: str | None = None
    paginator: Callable[..., Paginator] = CursorPaginator
    paginator_options: Mapping[str, Any] = field(default_factory=dict)
    records_path: str | None = "data"
    page_size: int = 100
    lookback: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)
    budget: str | None = None

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1.")
        if self.lookback < 0:
            raise ValueError("lookback must be >= 0 seconds.")

    @property
    def incremental(self) -> bool:
        """True when a run can read only what changed since the last one."""
        return self.replication_key is not None and self.since_param is not None


@dataclass(frozen=True)
class Page:
    """One page read from a stream.

    Attributes:
        records: the records, in the provider's order.
        position: the paginator's position of the *next* page, to store with this page's
            records; ``None`` when this was the last page.
        finished: True when this was the last page.
        max_replication: the greatest replication-key value among the records (``None``
            without a replication key or without records).
        skipped: records left out because they had no primary key.
    """

    records: list[dict[str, Any]]
    position: Any
    finished: bool
    max_replication: Any = None
    skipped: int = 0


def since_for(cursor: Any, lookback: float) -> Any:
    """The filter value of an incremental run: the cursor, moved back by ``lookback`` seconds
    when it is an ISO-8601 time (other cursors are used as they are)."""
    if cursor is None or not lookback or not isinstance(cursor, str):
        return cursor
    try:
        when = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    except ValueError:
        return cursor
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    earlier = (when - timedelta(seconds=lookback)).astimezone(UTC)
    return earlier.isoformat(timespec="microseconds").replace("+00:00", "Z")
