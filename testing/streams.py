"""The contract's stream checks: a recorded walk read to its end, in the declared order, and a
repeated position caught by the engine's cycle rule.

The engine (:mod:`tasks.syncs`) records the digest of every position a run follows
(:func:`store.run_pages.position_digest`); a page that hands back a position the run already
followed is a cycle and ends the run. The suite applies the same rule to the positions the
connector hands back, after a round trip through JSON (a stored position is JSON).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

import pytest

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.pagination import (
    OffsetPaginator,
    PageNumberPaginator,
    SinglePagePaginator,
    extract,
)
from spark_integrations.connectors.streams import Page, Stream, replication_order
from spark_integrations.errors import PaginationLoopError
from spark_integrations.store.run_pages import position_digest
from spark_integrations.testing.checks import Evidence, see
from spark_integrations.testing.compare import complete, request_problems
from spark_integrations.testing.recordings import Recordings
from spark_integrations.testing.replay import Replay, make_client, read_page

__all__ = ["ORDERS", "check_cycle", "check_stream", "order_key"]

#: The orders a stream may declare.
ORDERS = ("oldest_first", "newest_first", "delta")


#: How replication values compare: numbers and numeric text (Slack's ``ts``, Discord's
#: snowflakes) as numbers, ISO-8601 times as instants, other text as text; the engine's own
#: comparison (:func:`connectors.streams.replication_order`, used by a newest-first run's early
#: stop), so the suite checks a declared order as the engine reads it.
order_key = replication_order


def _round_trip(position: Any, where: str) -> Any:
    try:
        again = json.loads(json.dumps(position))
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{where}: the position is not JSON ({exc}).") from None
    if again != position:
        raise AssertionError(f"{where}: the position does not survive a JSON round trip.")
    return again


def _stream_of(connector: type[Connector], entry: Mapping[str, Any]) -> Stream:
    return connector.get_stream(entry["stream"])


def _values(stream: Stream, page: Page) -> list[Any]:
    if stream.replication_key is None:
        return []
    return [v for r in page.records if (v := extract(r, stream.replication_key)) is not None]


def _page_problems(stream: Stream, page: Page, spec: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    expect = spec.get("expect") or {}
    if "records" in expect and len(page.records) != int(expect["records"]):
        problems.append(f"{where}: {len(page.records)} records, expected {expect['records']}")
    if "ids" in expect:
        ids = [extract(r, stream.primary_key) for r in page.records]
        if [str(i) for i in ids] != [str(i) for i in expect["ids"]]:
            problems.append(f"{where}: primary keys {ids}, expected {expect['ids']}")
    # A wrong primary or replication key would read None everywhere, and order nothing.
    needed = [stream.primary_key]
    if stream.replication_key and stream.order != "delta":
        needed.append(stream.replication_key)
    for number, record in enumerate(page.records, 1):
        lacking = [k for k in needed if extract(record, k) is None]
        if lacking:
            problems.append(f"{where}: record {number} has no {' or '.join(lacking)}")
            break
    values = _values(stream, page)
    if values:
        keys = [order_key(v) for v in values]
        if page.max_replication is not None and order_key(page.max_replication) != max(keys):
            problems.append(f"{where}: max_replication is not the page's greatest value")
        lowest = page.min_replication
        if lowest is not None and order_key(lowest) != min(keys):
            problems.append(f"{where}: min_replication is not the page's least value")
    return problems


def _order_problems(stream: Stream, values: list[Any]) -> list[str]:
    order = stream.order
    if order not in ORDERS:
        return [f"stream {stream.name}: order {order!r} is not one of {', '.join(ORDERS)}"]
    if order == "delta" or stream.replication_key is None:
        return []
    keys = [order_key(v) for v in values]
    for index, (a, b) in enumerate(itertools.pairwise(keys)):
        wrong = b < a if order == "oldest_first" else b > a
        if wrong:
            return [
                f"stream {stream.name} declares order {order}, but record {index + 2} of the "
                f"walk has {stream.replication_key} {values[index + 1]!r} after {values[index]!r}"
            ]
    return []


def check_stream(
    connector: type[Connector], recs: Recordings, entry: Mapping[str, Any], evidence: Evidence
) -> None:
    """The recorded pages are read to the end: each request as documented, each position a
    JSON value the next page starts from, no position twice, the records in the declared order."""
    stream = _stream_of(connector, entry)
    pages = list(entry.get("pages") or [])
    if not pages:
        raise AssertionError(f"stream {stream.name}: the recording has no pages.")
    client = make_client(connector, recs, config=entry.get("config"))
    see(evidence, "the client", client)
    position = entry.get("position")
    followed: set[str] = set()
    values: list[Any] = []
    problems: list[str] = []
    total = 0
    method = "GET"
    with Replay(recs) as replay:
        for index, spec in enumerate(pages):
            where = f"stream {stream.name}, page {index + 1}"
            replay.add(*(spec.get("responses") or []), spec.get("response") or {})
            answer = read_page(
                client,
                stream,
                since=entry.get("since"),
                position=position,
                params=entry.get("params"),
            )
            page = answer.value
            see(evidence, where, page, page.records)
            expected = spec.get("request") or {}
            needed = ("path", "query") if index == 0 else ("query",)
            problems += [
                f"{where}: the recording documents no request {key}"
                for key in needed
                if key not in expected
            ]
            # A later page is asked for as the first was, unless its recording says otherwise.
            method = str(expected.get("method", method))
            problems += request_problems(
                replay.sent[-1], {**complete(expected), "method": method}, client.base_url, where
            )
            problems += _page_problems(stream, page, spec, where)
            values += _values(stream, page)
            total += len(page.records)
            if page.finished:
                if index != len(pages) - 1:
                    problems.append(
                        f"{where}: the walk ended with {len(pages) - index - 1} pages left"
                    )
                if stream.order == "delta":
                    if page.cursor is None:
                        problems.append(f"{where}: a delta stream's last page hands no cursor")
                    else:  # kept as the sync's cursor, stored as JSON
                        _round_trip(page.cursor, f"{where}, its delta cursor")
                    if "cursor" in entry and page.cursor != entry["cursor"]:
                        problems.append(
                            f"{where}: the delta cursor is {page.cursor!r}, "
                            f"expected {entry['cursor']!r}"
                        )
                break
            if index == len(pages) - 1:
                problems.append(f"{where}: the last recorded page does not end the walk")
                break
            position = _round_trip(page.position, where)
            digest = position_digest(position)
            if digest in followed:
                problems.append(f"{where}: hands back a position already followed (a cycle)")
                break
            followed.add(digest)
    problems += _order_problems(stream, values)
    distinct = {order_key(v) for v in values}
    if len(pages) >= 2 and stream.order != "delta" and stream.replication_key and len(distinct) < 2:
        problems.append(
            f"stream {stream.name}: the walk's records hold fewer than two different "
            f"{stream.replication_key} values, so its declared order {stream.order} goes unchecked"
        )
    if "records" in entry and total != int(entry["records"]):
        problems.append(f"stream {stream.name}: {total} records read, expected {entry['records']}")
    if problems:
        raise AssertionError("; ".join(problems))


def check_cycle(
    connector: type[Connector], recs: Recordings, entry: Mapping[str, Any], evidence: Evidence
) -> None:
    """Served the first page's answer again where the second page was asked for, the stream
    hands back the position it was asked from; the engine's rule then stops the run."""
    stream = _stream_of(connector, entry)
    pages = list(entry.get("pages") or [])
    if len(pages) < 2:
        _one_page(stream, recs)
    first = pages[0]
    client = make_client(connector, recs, config=entry.get("config"))
    see(evidence, "the client", client)
    params = entry.get("params")
    since = entry.get("since")
    with Replay(recs) as replay:
        replay.add(*(first.get("responses") or []), first.get("response") or {})
        page = read_page(client, stream, since=since, position=entry.get("position"), params=params)
        if page.value.finished:
            raise AssertionError(f"stream {stream.name}: the first recorded page ends the walk.")
        position = _round_trip(page.value.position, f"stream {stream.name}, page 1")
        followed = {position_digest(position)}
        replay.add(*(first.get("responses") or []), first.get("response") or {})
        try:
            again = read_page(client, stream, since=since, position=position, params=params).value
        except PaginationLoopError as exc:  # the connector caught it itself
            see(evidence, f"stream {stream.name}'s loop error", exc)
            return
    see(evidence, f"stream {stream.name}, the page served twice", again)
    if again.finished:
        raise AssertionError(
            f"stream {stream.name}: the first page's answer, served again, ended the walk."
        )
    repeated = _round_trip(again.position, f"stream {stream.name}, page 1 served again")
    if repeated != position and _counts_pages(stream):
        pytest.skip(
            f"stream {stream.name}: its positions count pages (an offset or a page number), "
            "so no answer can loop it."
        )
    if position_digest(repeated) not in followed:
        raise AssertionError(
            f"stream {stream.name}: the first page's answer, served again, hands back another "
            "position, so a provider repeating itself would escape the engine's cycle rule."
        )


def _one_page(stream: Stream, recs: Recordings) -> None:
    """A one-page walk cannot loop: skip it when the stream reads one page by design or another
    walk of it reaches a second page; otherwise the stream's pagination goes unchecked."""
    if stream.paginator is SinglePagePaginator:
        pytest.skip(f"stream {stream.name} reads one page (no pagination), nothing to loop on.")
    longer = [
        e
        for e in recs.entries("streams")
        if e.get("stream") == stream.name and len(e.get("pages") or []) >= 2
    ]
    if longer:
        pytest.skip(f"stream {stream.name}: one recorded page here; another walk has more.")
    raise AssertionError(
        f"stream {stream.name}: no recorded walk reaches a second page, so neither its "
        "pagination nor the cycle rule is checked; record a walk of two pages or more."
    )


def _counts_pages(stream: Stream) -> bool:
    paginator = stream.paginator
    return isinstance(paginator, type) and issubclass(
        paginator, OffsetPaginator | PageNumberPaginator
    )
