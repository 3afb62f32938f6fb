"""Spark's listings read streamed (connectors.spark_listing through the spark connector's
perform_page): one request for a bare array handed on in pages, the cursor's rows only, a run
resumed elsewhere going on without losing a row, and the envelope paged by offset."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.providers import spark as spark_module
from spark_integrations.errors import AuthenticationError, FatalError, RetriableError

BASE = "https://spark.test"
TASKS = f"{BASE}/api/v1/tasks"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


#: Seconds between two tasks' creations: more than the tasks stream's lookback (5 s), so a
#: resumed answer reads again only the newest row it had read (within the lookback of it).
GAP = 10


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def row(n: int, *, updated: float | None = None) -> dict[str, Any]:
    """Task ``n``, created at T0 + n * GAP seconds (newest first means n descending); updated
    half a second later unless ``updated`` (seconds) says otherwise."""
    return {
        "id": f"task-{n:05d}",
        "workflow_id": "wf",
        "status": "completed",
        "input_data": f"in {n}",
        "created_at": stamp(n * GAP),
        "updated_at": stamp(n * GAP + 0.5 if updated is None else updated),
    }


def client() -> Connector:
    return get_connector("spark")({"base_url": BASE}, {"api_key": "spark-unit-key-01"})


def walk(spark: Connector, *, since: Any = None, position: Any = None) -> tuple[list[str], Any]:
    """Read pages until the end: the ids handed on, and the last position."""
    stream = spark.get_stream("tasks")
    ids: list[str] = []
    while True:
        page = spark.perform_page(stream, since=since, position=position, params={}).value
        ids += [r["id"] for r in page.records]
        if page.finished:
            return ids, position
        position = json.loads(json.dumps(page.position))  # stored as JSON between pages


@responses.activate
def test_a_bare_array_is_read_in_one_request_and_handed_on_in_pages() -> None:
    rows = [row(n) for n in range(1200, 0, -1)]
    responses.get(TASKS, json=rows)
    spark = client()
    stream = spark.get_stream("tasks")
    first = spark.perform_page(stream, params={}).value
    assert len(first.records) == stream.page_size == 500
    assert not first.finished and first.position["rows"] == 500
    ids, _ = walk(spark, position=first.position)
    assert [r["id"] for r in first.records] + ids == [r["id"] for r in rows]
    assert len(responses.calls) == 1
    sent = responses.calls[0].request
    assert sent.headers["X-API-Key"] == "spark-unit-key-01"
    assert "limit=1000000" in str(sent.url) and "offset" not in str(sent.url)


@responses.activate
def test_only_rows_updated_at_or_after_since_are_handed_on() -> None:
    # Newest first by created_at; task 2 was retried, so it changed after task 3.
    rows = [row(3), row(2, updated=100), row(1)]
    responses.get(TASKS, json=rows)
    spark = client()
    page = spark.perform_page(spark.get_stream("tasks"), since=stamp(30.5), params={}).value
    assert [r["id"] for r in page.records] == ["task-00003", "task-00002"]  # 30.5 inclusive
    assert page.finished
    assert page.max_replication == stamp(100) and page.min_replication == stamp(30.5)


@responses.activate
def test_a_run_resumed_by_a_new_request_skips_what_it_read_and_keeps_what_changed() -> None:
    spark = client()
    stream = spark.get_stream("tasks")
    responses.get(TASKS, json=[row(n) for n in range(1000, 0, -1)])
    first = spark.perform_page(stream, params={}).value
    position = json.loads(json.dumps(first.position))
    # Meanwhile: task 1001 is new, task 900 (already read) and task 10 (not yet) are retried.
    responses.replace(
        responses.GET,
        TASKS,
        json=[row(1001, updated=20000)]
        + [row(n, updated=20001 if n in (900, 10) else None) for n in range(1000, 0, -1)],
    )
    again = client()  # another process: the open answer is not there
    ids, _ = walk(again, position=position)
    # The new task, the newest it had read (within the lookback of the highest updated_at
    # read), the one retried since, then on from the last row the first answer handed (read
    # again: rows created in the same instant may come in any order).
    assert ids[:3] == ["task-01001", "task-01000", "task-00900"]
    assert ids[3:] == [f"task-{n:05d}" for n in range(501, 0, -1)]
    assert len(responses.calls) == 2


@responses.activate
def test_a_run_resumed_without_a_resume_key_skips_by_count() -> None:
    spark = client()
    stream = spark.get_stream("workflows")
    rows = [{"id": f"wf-{n}", "updated_at": stamp(n)} for n in range(700)]
    responses.get(f"{BASE}/api/v1/workflows", json=rows)
    first = spark.perform_page(stream, params={}).value
    fresh = client()
    rest = fresh.perform_page(stream, position=json.loads(json.dumps(first.position))).value
    assert [r["id"] for r in first.records + rest.records] == [r["id"] for r in rows]
    assert rest.finished


@responses.activate
def test_the_envelope_is_paged_by_the_offset_it_answers() -> None:
    responses.get(
        TASKS,
        match=[responses.matchers.query_param_matcher({"limit": "1000000"})],
        json={"items": [row(3), row(2)], "total": 3, "limit": 2, "offset": 0, "has_more": True},
    )
    responses.get(
        TASKS,
        match=[responses.matchers.query_param_matcher({"limit": "1000000", "offset": "2"})],
        json={"has_more": False, "offset": 2, "items": [row(1)], "total": 3, "limit": 2},
    )
    ids, position = walk(client())
    assert ids == ["task-00003", "task-00002", "task-00001"]
    assert position == {"offset": 2}


@responses.activate
def test_an_envelope_repeating_its_page_hands_back_the_same_position() -> None:
    body = {"items": [row(3), row(2)], "total": 9, "limit": 2, "offset": 0, "has_more": True}
    responses.get(TASKS, json=body)
    spark = client()
    stream = spark.get_stream("tasks")
    first = spark.perform_page(stream, params={}).value
    again = spark.perform_page(stream, position=first.position, params={}).value
    assert again.position == first.position == {"offset": 2}  # the engine's cycle rule stops it


@responses.activate
def test_an_answer_broken_mid_listing_is_retriable_and_the_next_page_asks_again() -> None:
    text = json.dumps([row(n) for n in range(600, 0, -1)])
    responses.get(TASKS, body=text[: len(text) * 9 // 10])
    spark = client()
    stream = spark.get_stream("tasks")
    first = spark.perform_page(stream, params={}).value
    with pytest.raises(RetriableError, match="broke off mid-answer"):
        spark.perform_page(stream, position=first.position, params={})
    responses.replace(responses.GET, TASKS, body=text)
    rest = spark.perform_page(stream, position=first.position, params={}).value
    expected = ["task-00600"] + [f"task-{n:05d}" for n in range(101, 0, -1)]
    assert [r["id"] for r in rest.records] == expected
    assert len(responses.calls) == 2


@responses.activate
def test_a_body_that_is_no_listing_is_fatal() -> None:
    responses.get(TASKS, json="nope")
    spark = client()
    with pytest.raises(FatalError, match="neither a list nor an"):
        spark.perform_page(spark.get_stream("tasks"), params={})


def test_a_position_that_is_not_a_walks_is_fatal() -> None:
    spark = client()
    with pytest.raises(FatalError, match="reset the sync"):
        spark.perform_page(spark.get_stream("tasks"), position={"cursor": "x"}, params={})


@responses.activate
def test_a_page_asked_at_another_position_closes_the_open_answer_and_asks_again() -> None:
    responses.get(TASKS, json=[row(n) for n in range(1200, 0, -1)])
    spark = client()
    stream = spark.get_stream("tasks")
    first = spark.perform_page(stream, params={}).value
    second = spark.perform_page(stream, position=first.position, params={}).value
    # A page read ahead and discarded: the run asks the second page again.
    again = spark.perform_page(stream, position=first.position, params={}).value
    # The newest row read before (within the lookback) and the last one handed are read
    # again, then the same page.
    assert [r["id"] for r in again.records][:2] == ["task-01200", "task-00701"]
    assert [r["id"] for r in again.records][2:] == [r["id"] for r in second.records][:-2]
    assert len(responses.calls) == 2


@pytest.mark.parametrize("status", [401, 404, 503])
@responses.activate
def test_an_error_answer_to_a_streamed_listing_is_read_and_its_connection_released(
    status: int,
) -> None:
    responses.get(TASKS, status=status, json={"detail": "Invalid API key"})
    spark = client()
    with pytest.raises((AuthenticationError, FatalError, RetriableError)) as raised:
        spark.perform_page(spark.get_stream("tasks"), params={})
    answer = raised.value.response
    assert answer is not None and answer.status_code == status
    assert answer.raw.closed  # read to its end: its connection went back to the pool
    assert "spark-unit-key-01" not in str(raised.value)


@responses.activate
def test_a_bare_array_as_long_as_the_limit_asked_is_fatal_not_silently_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Spark 0.3.x answers at most `limit` rows and says nothing of the rest: a listing that
    # long may have lost its oldest rows, which the run cannot reach.
    monkeypatch.setattr(spark_module, "LISTING_LIMIT", 600)
    responses.get(TASKS, json=[row(n) for n in range(600, 0, -1)])
    spark = client()
    stream = spark.get_stream("tasks")
    first = spark.perform_page(stream, params={}).value
    assert len(first.records) == 500
    with pytest.raises(FatalError, match="600 rows, as many as the connector asks") as raised:
        spark.perform_page(stream, position=first.position, params={})
    assert "workflow_id or status" in str(raised.value)
    responses.replace(responses.GET, TASKS, json=[row(n) for n in range(599, 0, -1)])
    fresh = client()
    ids, _ = walk(fresh)
    assert len(ids) == 599
