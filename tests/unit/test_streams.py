"""Streams: one page at a time, resumable, filtered inclusively (connectors/streams.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import responses

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.pagination import OffsetPaginator
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.connectors.streams import Stream, since_for
from spark_integrations.errors import FatalError, UsageError

BASE = "https://api.example.test"


class Shop(Connector):
    name = "shop"
    streams: ClassVar[tuple[Stream, ...]] = (
        Stream(
            "orders",
            "/orders",
            primary_key="id",
            replication_key="updated",
            since_param="since",
            records_path="data",
            page_size=2,
        ),
        Stream(
            "products",
            "/products",
            primary_key="sku",
            paginator=OffsetPaginator,
            records_path=None,
            page_size=2,
        ),
    )


def client() -> Shop:
    return Shop({"base_url": BASE}, {})


@responses.activate
def test_pages_carry_their_position_and_the_highest_replication_value() -> None:
    responses.get(
        f"{BASE}/orders",
        match=[responses.matchers.query_param_matcher({"since": "t0", "limit": "2"})],
        json={
            "data": [{"id": 1, "updated": "t1"}, {"id": 2, "updated": "t3"}],
            "next_cursor": "c1",
        },
    )
    responses.get(
        f"{BASE}/orders",
        match=[
            responses.matchers.query_param_matcher({"since": "t0", "limit": "2", "cursor": "c1"})
        ],
        json={"data": [{"id": 3, "updated": "t2"}, {"nope": True}], "next_cursor": None},
    )
    first = client().read_page("orders", since="t0")
    assert [r["id"] for r in first.records] == [1, 2]
    assert (first.position, first.finished, first.max_replication) == ("c1", False, "t3")
    # A later task resumes from the stored position alone.
    second = client().read_page("orders", since="t0", position=first.position)
    assert [r["id"] for r in second.records] == [3]
    assert (second.position, second.finished, second.skipped) == (None, True, 1)


@responses.activate
def test_a_full_stream_sends_no_filter_and_reads_a_top_level_list() -> None:
    responses.get(f"{BASE}/products", json=[{"sku": "a"}, {"sku": "b"}])
    page = client().read_page("products", since="ignored")
    assert [r["sku"] for r in page.records] == ["a", "b"]
    assert page.position == 2 and not page.finished and page.max_replication is None
    assert "since" not in (responses.calls[0].request.url or "")


@responses.activate
def test_a_page_without_records_where_declared_is_fatal() -> None:
    responses.get(f"{BASE}/orders", json={"items": []})
    with pytest.raises(FatalError, match="no list at 'data'"):
        client().read_page("orders")


def test_unknown_stream_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="offers orders, products"):
        client().read_page("refunds")
    assert SandboxConnector.stream_names() == ("items", "items_newest", "items_by_tag")
    assert SandboxConnector.get_stream("items").incremental


@pytest.mark.parametrize(
    ("cursor", "lookback", "expected"),
    [
        (None, 60, None),
        ("2026-01-01T00:01:00Z", 0, "2026-01-01T00:01:00Z"),
        ("2026-01-01T00:01:00Z", 60, "2026-01-01T00:00:00.000000Z"),
        ("2026-01-01T00:01:00+00:00", 0.5, "2026-01-01T00:00:59.500000Z"),
        ("opaque", 60, "opaque"),
        (42, 60, 42),
    ],
)
def test_lookback_moves_a_time_cursor_back(cursor: Any, lookback: float, expected: Any) -> None:
    assert since_for(cursor, lookback) == expected


def test_a_stream_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="page_size"):
        Stream("x", "/x", primary_key="id", page_size=0)
    with pytest.raises(ValueError, match="lookback"):
        Stream("x", "/x", primary_key="id", lookback=-1)
