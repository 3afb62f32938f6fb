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

from spark_integrations.connectors.pagination.base import SEEN_TOKENS_LIMIT, Paginator, extract
from spark_integrations.connectors.pagination.bodies import (
    AfterLastPaginator,
    AfterMaxPaginator,
    NextURLPaginator,
)
from spark_integrations.connectors.pagination.styles import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    SinglePagePaginator,
)

__all__ = [
    "SEEN_TOKENS_LIMIT",
    "AfterLastPaginator",
    "AfterMaxPaginator",
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextTokenPaginator",
    "NextURLPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "Paginator",
    "SinglePagePaginator",
    "extract",
]
