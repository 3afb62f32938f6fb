"""How a connector reads one page of a stream: the page's request, and the page its answer holds.

:meth:`connectors.base.Connector.perform_page` and :meth:`~connectors.base.Connector.parse_page`
delegate here; both stay methods of the connector, so a provider with unusual pages overrides
them there (see :mod:`connectors.streams` for what a page is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import requests

from spark_integrations.connectors import http
from spark_integrations.connectors.encoding import query_value
from spark_integrations.connectors.pagination import Paginator, extract
from spark_integrations.connectors.streams import Page, Stream, replication_order
from spark_integrations.errors import FatalError

if TYPE_CHECKING:
    from spark_integrations.connectors.base import Connector

__all__ = ["page_request", "parse_page"]


def page_request(
    connector: Connector,
    stream: Stream,
    *,
    since: Any = None,
    position: Any = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[Paginator, str, dict[str, Any]]:
    """The paginator of one page of ``stream`` and the URL and query of its GET request, as
    :meth:`connectors.base.Connector.perform_page` describes its arguments.

    Raises:
        UsageError: a path parameter cannot fill its segment.
    """
    if stream.order == "delta" and position is None and since is not None:
        position = since
    paginator = stream.paginator(
        start_value=position,
        page_size=stream.page_size,
        connector=connector.name,
        **dict(stream.paginator_options),
    )
    path, rest = stream.url_path(params or {})
    query = dict(stream.params)
    query.update({key: query_value(value) for key, value in rest.items()})
    if since is not None and stream.incremental and stream.order != "delta":
        assert stream.since_param is not None
        query[stream.since_param] = since
    url, query = paginator.request(connector.url(path), query)
    return paginator, url, query


def parse_page(
    connector: Connector, stream: Stream, paginator: Paginator, response: requests.Response
) -> Page:
    """The page an answer holds: its records, where the next page is, its lowest and highest
    replication values and, on a delta stream's last page, the paginator's ``final_cursor``
    (the provider's delta cursor) when it has one.

    Raises:
        FatalError: the page holds no list of records where the stream says.
    """
    name = connector.name
    body = http.parse_json(response, connector=name)
    found = extract(body, stream.records_path)
    if not isinstance(found, list):
        raise FatalError(
            f"{name}'s {stream.name} page holds no list at "
            f"{stream.records_path or 'its top level'!r}.",
            connector=name,
            status=response.status_code,
        )
    records = [
        r for r in found if isinstance(r, dict) and extract(r, stream.primary_key) is not None
    ]
    paginator.advance(response, found)
    highest = lowest = None
    if stream.replication_key is not None:
        values = [v for r in records if (v := extract(r, stream.replication_key)) is not None]
        try:
            highest = max(values, default=None)
        except TypeError:  # mixed types: compare as text
            highest = max(values, default=None, key=str)
        # As the early stop compares it (times as instants, numeric text as numbers).
        lowest = min(values, default=None, key=replication_order)
    cursor = getattr(paginator, "final_cursor", None) if paginator.finished else None
    return Page(
        records=records,
        position=None if paginator.finished else paginator.current_value,
        finished=paginator.finished,
        max_replication=highest,
        skipped=len(found) - len(records),
        min_replication=lowest,
        cursor=cursor,
    )
