"""Spark's listings, read streamed: one answer parsed record by record, handed on in pages.

Spark 0.3.x answers its listings as a bare JSON array and takes no offset and no time filter
(``GET /api/v1/tasks?limit=N``, newest first by ``created_at``); later versions wrap a page in
an envelope ``{items, total, limit, offset, has_more}``. Both are read the same way: one request
asks for :data:`LISTING_LIMIT` rows, the body is parsed incrementally (ijson, over the
response's socket), so memory holds one page of records whatever the listing's size, and an
envelope saying ``has_more`` is followed by a request at the next offset. A bare array holding
as many rows as asked may have been cut short (spark says nothing): it fails the run rather than
end it inexact.

A :class:`Walk` is one open answer and where a sync run stands in it. Its position (JSON, stored
with each committed page) says where to go on when the answer is no longer open (another task
of the run, another process): ``{"offset": O}`` starts the answer at offset ``O``;
``{"offset": O, "rows": K, "after": A, "high": H}`` is inside it, ``K`` rows consumed, the last
one's ``created_at`` ``A`` and the greatest ``updated_at`` consumed ``H``. A fresh request
skips the rows created after ``A`` whose ``updated_at`` is not after ``H`` (less a margin): they
were read already, while rows created or changed since then are newer than ``H`` and are read
now. Streams without a resume key skip ``K`` rows instead (small listings, read in full).

Only rows whose replication value is at or after the run's ``since`` are handed on (inclusive:
the record store's upsert absorbs the boundary row): an exact incremental read of a listing
the provider cannot filter, paid for by transferring every row on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import ijson
import requests
import urllib3

from spark_integrations.connectors.streams import Page, replication_order
from spark_integrations.errors import FatalError, RetriableError

__all__ = ["LISTING_LIMIT", "Walk", "start_of"]

#: The ``limit`` every listing request asks: all of spark 0.3.x's rows in one answer.
LISTING_LIMIT = 1_000_000
#: Raw rows one page may pass over (rows before the run's ``since``) before it is handed on,
#: in page sizes: a page's time stays bounded when few rows are kept.
SCAN_PAGES = 40
_ITEMS = {"start_array": "item", "start_map": "items.item"}
_META = ("has_more", "offset", "total", "limit")
_BROKEN = (ijson.JSONError, urllib3.exceptions.HTTPError, requests.RequestException, OSError)


@dataclass
class Where:
    """A position of a walk, as stored between pages (see the module docstring)."""

    offset: int = 0
    rows: int = 0
    after: Any = None
    high: Any = None

    def dump(self) -> dict[str, Any]:
        """The position as JSON: the offset alone at the start of an answer."""
        if not self.rows:
            return {"offset": self.offset}
        found: dict[str, Any] = {"offset": self.offset, "rows": self.rows}
        if self.after is not None:
            found["after"] = self.after
        if self.high is not None:
            found["high"] = self.high
        return found


def start_of(position: Any, *, connector: str) -> Where:
    """Where a stored position says a walk stands (``None``: the listing's start).

    Raises:
        FatalError: the position is not one a walk hands back.
    """
    if position is None:
        return Where()
    offset = position.get("offset") if isinstance(position, dict) else None
    rows = position.get("rows", 0) if isinstance(position, dict) else None
    if not isinstance(offset, int) or not isinstance(rows, int) or offset < 0 or rows < 0:
        raise FatalError(
            f"{connector}: the sync's position {position!r} is not a listing position; "
            "reset the sync.",
            connector=connector,
        )
    return Where(offset, rows, position.get("after"), position.get("high"))


def _instant(value: Any) -> Any:
    """A value as :func:`replication_order` compares it (times as instants)."""
    return replication_order(value)


@dataclass
class Walk:
    """One open answer of a listing and where a run stands in it.

    Attributes:
        response: the answer, its body read as the walk goes (closed by :meth:`close`).
        where: the position of the next row, as :class:`Where`.
        replication_key: the field compared with ``since`` (``None``: every row is kept).
        since: the run's ``since`` (``None``: every row is kept).
        resume_key: the field the listing is sorted on, newest first (``created_at``), for
            resuming after ``where.after``; ``None``: resume by counting rows.
        margin: seconds before ``where.high`` whose rows are read again on resuming.
    """

    response: requests.Response
    where: Where
    connector: str
    stream: str
    replication_key: str | None = None
    since: Any = None
    resume_key: str | None = None
    margin: float = 0.0
    #: The ``limit`` the request asked: a bare array as long is cut short (spark says nothing).
    limit: int | None = None
    #: The position this walk was opened at (a fresh answer skips what it already handed).
    resumed: Where | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ended: bool = False
    bare: bool = False
    _rows: Iterator[Any] | None = None
    _peeked: list[Any] = field(default_factory=list)
    _since_at: Any = None  # ``since`` as an instant, once per walk
    _high_at: Any = None  # ``where.high`` as an instant, kept with it

    # -- reading the answer -----------------------------------------------------------------

    def _records(self) -> Iterator[Any]:
        raw = self.response.raw
        raw.decode_content = True
        body = _Peeked(raw)
        if body.head.lstrip()[:1] == b"[":
            # Spark 0.3.x's bare array: ijson's own item builder (its C backend) is several
            # times faster than building each row from the events below.
            self.bare = True
            yield from ijson.items(body, "item", use_float=True)
            return
        events = ijson.parse(body, use_float=True)
        prefix, event, _ = next(events)
        items = _ITEMS.get(event) if prefix == "" else None
        if items is None:
            raise FatalError(
                f"{self.connector}'s {self.stream} listing is neither a list nor an "
                "{items, ...} envelope.",
                connector=self.connector,
                status=self.response.status_code,
            )
        self.bare = items == "item"
        builder: ijson.ObjectBuilder | None = None
        for prefix, event, value in events:
            if builder is not None:
                builder.event(event, value)
                if prefix == items and event in ("end_map", "end_array"):
                    yield builder.value
                    builder = None
            elif prefix == items:
                if event in ("start_map", "start_array"):
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                elif event != "end_array":
                    yield value
            elif prefix in _META:
                self.meta[prefix] = value

    def _next(self) -> Any:
        """The answer's next row, or ``_END`` when it has no more."""
        if self._peeked:
            return self._peeked.pop()
        if self._rows is None:
            self._rows = self._records()
        try:
            return next(self._rows, _END)
        except _BROKEN as exc:
            raise RetriableError(
                f"{self.connector}'s {self.stream} listing broke off mid-answer "
                f"({type(exc).__name__}).",
                connector=self.connector,
            ) from None

    def _skipped(self, row: Any) -> bool:
        """True for a row a fresh answer passes over: the run read it before this answer."""
        resumed = self.resumed
        if resumed is None or not resumed.rows:
            return False
        if self.resume_key is None or resumed.after is None:
            return self.where.rows < resumed.rows
        key = row.get(self.resume_key) if isinstance(row, dict) else None
        if key is None or _instant(key) <= _instant(resumed.after):
            self.resumed = None  # past the point the run had reached: read on
            return False
        value = row.get(self.replication_key or "") if isinstance(row, dict) else None
        if value is None or resumed.high is None:
            return True
        limit = _instant(resumed.high)
        if limit[0] == 1 and self.margin:
            limit = (1, limit[1] - timedelta(seconds=self.margin))
        mine = _instant(value)
        return mine[0] == limit[0] and bool(mine[1] <= limit[1])

    def _kept(self, row: Any) -> bool:
        if not isinstance(row, dict):
            return False
        if self.replication_key is None or self.since is None:
            return True
        value = row.get(self.replication_key)
        if value is None:
            return True  # cannot tell: handed on (the upsert absorbs a repeat)
        if self._since_at is None:
            self._since_at = _instant(self.since)
        mine, since = _instant(value), self._since_at
        return mine[0] != since[0] or not bool(mine[1] < since[1])

    # -- pages ------------------------------------------------------------------------------

    def page(self, size: int, primary_key: str) -> Page:
        """The next page: up to ``size`` rows kept, read from the open answer.

        Raises:
            RetriableError: the answer broke off (the next page asks again from the position).
            FatalError: the answer is not a listing.
        """
        records: list[dict[str, Any]] = []
        scanned = 0
        while len(records) < size and scanned < size * SCAN_PAGES:
            row = self._next()
            if row is _END:
                self.ended = True
                break
            scanned += 1
            if self._skipped(row):
                self.where.rows += 1
                continue
            self._consume(row)
            if self._kept(row) and row.get(primary_key) is not None:
                records.append(row)
        if not self.ended:
            row = self._next()
            if row is _END:
                self.ended = True
            else:
                self._peeked.append(row)
        return self._page(records)

    def _consume(self, row: Any) -> None:
        where = self.where
        where.rows += 1
        if not isinstance(row, dict):
            return
        if self.resume_key is not None and row.get(self.resume_key) is not None:
            where.after = row[self.resume_key]
        value = row.get(self.replication_key or "")
        if value is None or self.replication_key is None:
            return
        mine = _instant(value)
        if where.high is not None and self._high_at is None:
            self._high_at = _instant(where.high)
        if where.high is None or mine > self._high_at:
            where.high, self._high_at = value, mine

    def _page(self, records: list[dict[str, Any]]) -> Page:
        values = [r[self.replication_key] for r in records if self.replication_key in r]
        values = [v for v in values if v is not None]
        highest = max(values, key=_instant, default=None)
        lowest = min(values, key=_instant, default=None)
        if not self.ended:
            position: Any = self.where.dump()
            finished = False
        else:
            self._check_whole()
            position = self._next_answer()
            finished = position is None
        return Page(
            records=records,
            position=position,
            finished=finished,
            max_replication=highest,
            min_replication=lowest,
        )

    def _check_whole(self) -> None:
        """Refuse a bare array holding as many rows as the request asked: spark 0.3.x cuts its
        listing at ``limit`` without a word, so its oldest rows may be out of reach, and a run
        that went on would not be exact.

        Raises:
            FatalError: the answer may have been cut short.
        """
        if self.bare and self.limit is not None and self.where.rows >= self.limit:
            raise FatalError(
                f"{self.connector}'s {self.stream} listing answered {self.where.rows} rows, as "
                "many as the connector asks, so older rows may be out of reach; narrow the sync "
                "with workflow_id or status.",
                connector=self.connector,
            )

    def _next_answer(self) -> Any:
        """Where the listing goes on after this answer: ``None`` when it is the last."""
        meta = self.meta
        echoed = meta.get("offset")
        start = echoed if isinstance(echoed, int) and not isinstance(echoed, bool) else None
        start = self.where.offset if start is None else start
        following = start + self.where.rows
        more = meta.get("has_more")
        if more is None and isinstance(meta.get("total"), int):
            more = following < meta["total"]
        return {"offset": following} if more is True else None

    def close(self) -> None:
        """Release the answer's connection (its unread rest is dropped)."""
        self.response.close()


class _Peeked:
    """An answer's body with its first bytes read ahead (to tell an array from an envelope)
    and handed back first, for ijson's reader."""

    def __init__(self, raw: Any) -> None:
        head = b""
        while not head.strip():
            chunk = raw.read(1)
            if not chunk:
                break
            head += chunk
        self.head = head
        self._pending = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson asks for nothing first, to learn whether the body is bytes
            return b""
        if self._pending:
            pending, self._pending = self._pending, b""
            return pending
        return bytes(self._raw.read(size))


class _End:
    """The end of an answer's rows."""


_END: Any = _End()
