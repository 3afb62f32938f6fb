"""The spark listing benchmark's pure helpers: the rows it copies into spark's ``tasks`` table,
the connector read it times (against spark's listing, mocked with ``responses``), and the
side-by-side measuring."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import responses

from bench import spark_listing as bench
from spark_integrations.connectors.spark_listing import LISTING_LIMIT
from spark_integrations.tasks.lease import run_since

BASE = "https://spark.bench"


def listed(count: int) -> list[dict[str, Any]]:
    """Spark's listing of :func:`bench.task_rows`: newest first, its times as ISO text."""
    rows = []
    for row in bench.task_rows("wf-1", count):
        task = dict(zip(bench.TASK_COLUMNS, row, strict=True))
        for name in ("created_at", "started_at", "finished_at", "updated_at"):
            task[name] = bench.stamp(task[name])
        task["input_data"] = {"value": json.loads(task["input_data"])}
        task["output_data"] = json.loads(task["output_data"])
        rows.append(task)
    return rows[::-1]


def test_task_rows_fit_the_columns_and_are_spaced_oldest_first() -> None:
    rows = list(bench.task_rows("wf-1", 3))
    assert len(rows) == 3
    assert all(len(row) == len(bench.TASK_COLUMNS) for row in rows)
    task = dict(zip(bench.TASK_COLUMNS, rows[1], strict=True))
    assert task["workflow_id"] == "wf-1" and task["status"] == "completed"
    assert task["created_at"] == bench.T0 + timedelta(seconds=bench.GAP)
    assert task["updated_at"] > task["created_at"]
    assert isinstance(json.loads(task["input_data"]), str)  # a run's input: a JSON string
    assert len({row[0] for row in rows}) == 3
    assert bench.newest_updated(3) == bench.stamp(rows[-1][-1])


@responses.activate
def test_connector_read_hands_on_every_row_then_only_the_cursors() -> None:
    count = 1200  # three pages of 500
    responses.get(f"{BASE}/api/v1/tasks", json=listed(count))
    spark = bench.spark_connector(BASE, "spark-bench-key-1")
    assert bench.connector_read(spark) == (count, 3)
    stream = spark.get_stream("tasks")
    since = run_since(stream, bench.newest_updated(count), stream.lookback)
    fresh = bench.spark_connector(BASE, "spark-bench-key-1")
    assert bench.connector_read(fresh, since) == (1, 1)  # the newest row only
    assert len(responses.calls) == 2
    assert responses.calls[0].request.headers["X-API-Key"] == "spark-bench-key-1"


@responses.activate
def test_plain_read_and_body_bytes() -> None:
    body = json.dumps(listed(7))
    responses.get(f"{BASE}/api/v1/tasks", body=body)
    assert bench.plain_read(BASE, "k") == 7
    assert bench.body_bytes(BASE, "k") == len(body.encode())
    assert f"limit={LISTING_LIMIT}" in str(responses.calls[0].request.url)


def test_compare_rotates_the_sides_and_checks_every_value() -> None:
    calls: list[str] = []
    checked: list[tuple[str, Any]] = []

    def side(name: str) -> Any:
        def run() -> Any:
            calls.append(name)
            return [0] * 10_000 if name == "b" else name

        return run

    out = bench.compare(
        {"a": side("a"), "b": side("b")}, 2, lambda name, value: checked.append((name, value))
    )
    assert calls == ["a", "b", "b", "a", "a", "b"]  # two timed repeats, then one traced each
    assert len(checked) == 6
    assert len(out["a"]["runs"]) == 2 and out["a"]["seconds"] >= 0
    assert out["b"]["peak python mb"] > out["a"]["peak python mb"]


def test_ratio() -> None:
    assert bench.ratio(3.0, 2.0) == 1.5
    assert bench.ratio(1.0, 0.0) is None
