"""The spark connector's look for a run_workflow whose answer was lost: the workflow's task rows
since the call's first attempt, newest first, read with a doubling limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.providers import spark as spark_module
from spark_integrations.errors import RetriableError

BASE = "https://spark.test"
TASKS = f"{BASE}/api/v1/tasks"
SINCE = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
PARAMS = {"workflow_id": "wf-1", "input": '{"n": 1}'}


def at(seconds: float) -> str:
    return (SINCE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def task(n: int, created: float, input_data: Any) -> dict[str, Any]:
    return {
        "id": f"t{n}",
        "workflow_id": "wf-1",
        "input_data": input_data,
        "status": "completed",
        "created_at": at(created),
        "updated_at": at(created + 1),
    }


@pytest.fixture
def spark() -> Connector:
    return get_connector("spark")({"base_url": BASE}, {"api_key": "spark-look-key-01"})


def look(spark: Connector) -> Any:
    return spark.look(spark.get_action("run_workflow"), dict(PARAMS), SINCE.timestamp())


def limits() -> list[int]:
    return [int(parse_qs(urlsplit(c.request.url).query)["limit"][0]) for c in responses.calls]


def test_only_run_workflow_is_lookable(spark: Connector) -> None:
    assert spark.lookable(spark.get_action("run_workflow"))
    assert not spark.lookable(spark.get_action("create_schedule"))


@responses.activate
def test_a_row_with_the_input_as_the_listing_shows_it_is_found(spark: Connector) -> None:
    # Spark 0.3.7's listing shows input_data as the text it was given.
    rows = [task(3, 30, "other"), task(2, 20, '{"n": 1}'), task(1, -100, "old")]
    responses.get(TASKS, json=rows)
    found = look(spark)
    assert found.outcome == "found" and found.data == rows[1]
    assert "workflow wf-1" in found.detail and "2026-12-06T06:00:00" in found.detail
    assert parse_qs(urlsplit(responses.calls[0].request.url).query)["workflow_id"] == ["wf-1"]


@responses.activate
def test_a_row_with_the_input_as_spark_parses_it_is_found(spark: Connector) -> None:
    rows = [task(2, 20, {"n": 1})]
    responses.get(TASKS, json={"items": rows, "total": 1, "limit": 20, "offset": 0,
                               "has_more": False})  # fmt: skip
    assert look(spark).outcome == "found"


@responses.activate
def test_the_same_input_before_the_first_attempt_is_not_the_run(spark: Connector) -> None:
    responses.get(TASKS, json=[task(2, 20, "other"), task(1, -1, '{"n": 1}')])
    found = look(spark)
    assert found.outcome == "absent"
    assert limits() == [20]


@responses.activate
def test_the_limit_doubles_until_a_row_older_than_the_call(spark: Connector) -> None:
    newer = [task(n, 100 + n, f"x{n}") for n in range(60, 0, -1)]
    responses.get(TASKS, json=newer[:20])
    responses.get(TASKS, json=newer[:40])
    responses.get(TASKS, json=[*newer, task(0, -5, '{"n": 1}')])
    assert look(spark).outcome == "absent"
    assert limits() == [20, 40, 80]


@responses.activate
def test_a_listing_ending_before_the_limit_is_read_to_its_end(spark: Connector) -> None:
    responses.get(TASKS, json=[task(1, 10, "x")])
    assert look(spark).outcome == "absent"
    assert limits() == [20]


@responses.activate
def test_more_rows_than_a_look_reads_is_unknown(
    spark: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spark_module, "LOOK_ROWS", 40)
    responses.get(TASKS, json=[task(n, 100 + n, f"x{n}") for n in range(20)])
    responses.get(TASKS, json=[task(n, 100 + n, f"x{n}") for n in range(40)])
    found = look(spark)
    assert found.outcome == "unknown" and "more than 40 rows" in found.detail
    assert limits() == [20, 40]


@responses.activate
def test_a_look_reads_up_to_look_rows_whatever_the_doubling(
    spark: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 50 rows since the call, the run the 50th: within LOOK_ROWS (60), though the doubling
    # (20, 40, 80) passes it: the last request asks LOOK_ROWS itself.
    monkeypatch.setattr(spark_module, "LOOK_ROWS", 60)
    rows = [task(n, 100 + n, f"x{n}") for n in range(50, 1, -1)] + [task(1, 50, '{"n": 1}')]

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        limit = int(parse_qs(urlsplit(request.url).query)["limit"][0])
        return 200, {}, json.dumps(rows[:limit])

    responses.add_callback(responses.GET, TASKS, callback=answer)
    found = look(spark)
    assert found.outcome == "found" and found.data["id"] == "t1"
    assert limits() == [20, 40, 60]


@pytest.mark.parametrize("status", [400, 404, 422])
@responses.activate
def test_a_refused_listing_is_unknown_naming_spark_s_detail(spark: Connector, status: int) -> None:
    responses.get(TASKS, status=status, json={"detail": "Workflow wf-1 not found"})
    found = look(spark)
    assert found.outcome == "unknown"
    assert "spark refused the request (Workflow wf-1 not found)" in found.detail
    assert "spark-look-key-01" not in found.detail


@responses.activate
def test_a_spark_failing_for_now_lets_the_fleet_look_again_later(spark: Connector) -> None:
    responses.get(TASKS, status=503, body="Service Unavailable")
    with pytest.raises(RetriableError):
        look(spark)
