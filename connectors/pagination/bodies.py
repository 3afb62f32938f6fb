"""Pagination styles whose next position comes from the records or is a whole URL in the body:
``after_last`` (Stripe), ``after_max`` (Discord) and ``next_url`` (Microsoft Graph)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

import requests

from spark_integrations.connectors.pagination.base import (
    Paginator,
    extract,
    json_page,
    next_or_none,
)
from spark_integrations.connectors.pagination.styles import _own_origin
from spark_integrations.errors import FatalError

__all__ = ["AfterLastPaginator", "AfterMaxPaginator", "NextURLPaginator", "field_of"]


def field_of(body: Any, path: str) -> Any:
    """The value at ``path``: a key holding dots itself (Graph's ``@odata.nextLink``) first,
    else a dotted path (:func:`extract`)."""
    if isinstance(body, Mapping) and path in body:
        return body[path]
    return extract(body, path)


class _RecordPositionPaginator(Paginator):
    """A position read from the records and sent back in ``param``, with the page size in
    ``limit_param`` (``None``: not sent)."""

    param: str
    limit_param: str | None

    def page_params(self) -> dict[str, Any]:
        """The position (not on the first page) and the page size."""
        params: dict[str, Any] = {}
        if self.current_value is not None:
            params[self.param] = self.current_value
        if self.limit_param:
            params[self.limit_param] = self.page_size
        return params


class AfterLastPaginator(_RecordPositionPaginator):
    """The last record's id sent back as the position, while the body says there is more, as
    Stripe's lists do (``?starting_after=cus_123`` while ``"has_more": true``)."""

    def __init__(
        self,
        start_value: Any = None,
        *,
        page_size: int = 100,
        connector: str = "",
        param: str = "starting_after",
        field: str = "id",
        has_more: str | None = "has_more",
        limit_param: str | None = "limit",
    ) -> None:
        """Configure the position's parameter, the record field it is read from, and the body
        field saying more pages follow (``None``: a full page means more)."""
        super().__init__(start_value, page_size=page_size, connector=connector)
        self.param = param
        self.field = field
        self.has_more = has_more
        self.limit_param = limit_param

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The last record's field, or ``None`` when the body says no more (or the page is
        empty, or short without a ``has_more`` field)."""
        if not records:
            return None
        if self.has_more:
            if field_of(json_page(response, self.connector), self.has_more) is not True:
                return None
        elif len(records) < self.page_size:
            return None
        last = records[-1]
        value = next_or_none(field_of(last, self.field)) if isinstance(last, Mapping) else None
        if value is None and self.has_more:
            # Finishing here would end the run early, its cursor past records never read.
            who = self.connector or "the provider"
            raise FatalError(
                f"{who} said {self.has_more} (more records follow) but the page's last record "
                f"has no {self.field} to ask for them with.",
                connector=self.connector,
                status=response.status_code,
            )
        return value


def _as_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class AfterMaxPaginator(_RecordPositionPaginator):
    """The greatest record id sent back as ``after``, as Discord's channel messages are read
    oldest first: ids are snowflakes, compared as integers (they arrive as strings), whatever
    order the page lists them in. A page shorter than the page size is the last."""

    def __init__(
        self,
        start_value: Any = None,
        *,
        page_size: int = 100,
        connector: str = "",
        param: str = "after",
        field: str = "id",
        limit_param: str | None = "limit",
    ) -> None:
        """Configure the position's parameter and the record field compared."""
        super().__init__(start_value, page_size=page_size, connector=connector)
        self.param = param
        self.field = field
        self.limit_param = limit_param

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The greatest field value of a full page (as the provider wrote it), else ``None``."""
        if len(records) < self.page_size:
            return None
        best: Any = None
        best_number: int | None = None
        for record in records:
            value = field_of(record, self.field) if isinstance(record, Mapping) else None
            number = _as_integer(value)
            if number is not None and (best_number is None or number > best_number):
                best, best_number = value, number
        return best


class NextURLPaginator(Paginator):
    """The next page's whole URL in the body, as Microsoft Graph's ``@odata.nextLink``; on the
    last page, ``final_field`` (Graph's ``@odata.deltaLink``) is kept as :attr:`final_cursor`,
    where the next delta round starts. Links are followed on the connection's origin only."""

    def __init__(
        self,
        start_value: Any = None,
        *,
        page_size: int = 100,
        connector: str = "",
        field: str = "@odata.nextLink",
        final_field: str | None = None,
        size_param: str | None = None,
    ) -> None:
        """Configure the body fields of the next URL and of the final cursor, and the size
        parameter of the first request (Graph: ``$top``)."""
        super().__init__(start_value, page_size=page_size, connector=connector)
        self.field = field
        self.final_field = final_field
        self.size_param = size_param
        #: The final field's URL, once the last page was read (``None`` before, or without).
        self.final_cursor: str | None = None

    def request(self, url: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The stream's URL and params on the first page, then the URL alone (it carries its
        own query): a next link, or the final cursor a run starts from."""
        self._check_not_finished("request")
        if self.current_value is None:
            extra = {self.size_param: self.page_size} if self.size_param else {}
            return url, {**params, **extra}
        return _own_origin(str(self.current_value), url, self.connector), {}

    def _link(self, response: requests.Response, path: str) -> str | None:
        value = next_or_none(field_of(json_page(response, self.connector), path))
        if not isinstance(value, str):
            return None
        absolute = urljoin(response.url or "", value)
        return _own_origin(absolute, response.url, self.connector) if response.url else absolute

    def next_value(self, response: requests.Response, records: Sequence[Any]) -> Any | None:
        """The next URL, or ``None`` on the last page (which sets :attr:`final_cursor`)."""
        following = self._link(response, self.field)
        if following is None and self.final_field:
            self.final_cursor = self._link(response, self.final_field)
        return following
