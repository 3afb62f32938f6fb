"""Benchmark of the ``spark`` connector's ``tasks`` stream against the real automagik-spark 0.3.7.

Spark 0.3.x lists its task rows as one bare JSON array, newest first, with no offset and no
time filter, so the connector reads the whole listing on every run: one request asking
``limit=LISTING_LIMIT``, its body parsed incrementally (ijson) and handed on in pages of 500,
keeping the rows updated at or after the run's ``since`` (:mod:`connectors.spark_listing`).
This measures what that costs, side by side in one run, against the honest minimum: one
``requests.get(url, params={"limit": LISTING_LIMIT}).json()`` of the same listing with the same
key, which holds the whole body and every row at once.

* full read: every page of the ``tasks`` stream through the connector's ``perform_page`` loop
  (its position passed through JSON between pages, as a sync stores it), no Celery and no
  store, the records of a page dropped once counted (a sync hands them to the store);
* incremental read with nothing new: the same loop with the ``since`` a sync derives from a
  cursor at the newest ``updated_at`` (less the stream's lookback), so only the rows of the
  last few seconds are kept, yet every row is still transferred and parsed;
* seconds (median of the repeats, the sides alternating, each on a new connection) and peak
  Python memory (``tracemalloc``, one traced run per side, apart from the timed runs since
  tracing slows allocation down); the body's size.

Spark runs on a PostgreSQL database and a ``redis-server`` of its own
(``tests/integration/real_spark.py``; no fleet Redis is used); its ``tasks`` table is filled
with ``COPY`` under one workflow row, both matching spark's models
(``automagik_spark/core/database/models.py``).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import ijson
import psycopg
import requests

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.spark_listing import LISTING_LIMIT
from spark_integrations.tasks.lease import run_since

#: Seconds between two task rows' creations (a task finishes 1.5 s after it was created).
GAP = 10.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MB = 1_000_000
TASK_COLUMNS = (
    "id", "workflow_id", "status", "input_data", "output_data", "error", "tries",
    "max_retries", "created_at", "started_at", "finished_at", "updated_at",
)  # fmt: skip
PLAIN_READ = (
    'requests.get(url, params={"limit": LISTING_LIMIT}, headers={"X-API-Key": key}).json(), '
    "the whole array held"
)


# -- spark's rows --------------------------------------------------------------------------------


def stamp(value: datetime) -> str:
    """A time as spark's listing shows it (``isoformat``; UTC)."""
    return value.isoformat()


def task_rows(workflow_id: str, count: int, start: datetime = T0) -> Iterator[tuple[Any, ...]]:
    """``count`` completed task rows of one workflow, oldest first, for ``COPY tasks`` in
    :data:`TASK_COLUMNS` order: created :data:`GAP` seconds apart, input a short message (JSON
    text, as spark stores a run's string input), output an Agents source's answer."""
    for n in range(count):
        created = start + timedelta(seconds=n * GAP)
        message = f"bench message {n:07d}: summarise the day's new issues"
        output = {
            "message": f"echo: {message}",
            "session_id": str(uuid.UUID(int=n + 1)),
            "success": True,
        }
        yield (
            str(uuid.uuid4()),
            workflow_id,
            "completed",
            json.dumps(message),
            json.dumps(output),
            None,
            0,
            3,
            created,
            created + timedelta(seconds=0.25),
            created + timedelta(seconds=1.5),
            created + timedelta(seconds=1.5),
        )


def newest_updated(count: int, start: datetime = T0) -> str:
    """The greatest ``updated_at`` of :func:`task_rows` (the cursor of a sync that read all)."""
    return stamp(start + timedelta(seconds=(count - 1) * GAP + 1.5))


def fill_tasks(db_url: str, count: int) -> str:
    """One workflow and ``count`` task rows in spark's database; returns the workflow's id."""
    workflow_id = str(uuid.uuid4())
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO workflows (id, name, description, source, remote_flow_id, "
            "input_component, output_component, flow_version, is_component, liked, "
            "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 1, false, false, "
            "%s, %s)",
            (workflow_id, "bench-echo", "the listing benchmark's workflow", "automagik-agents",
             "bench-echo", "input", "output", T0, T0),
        )  # fmt: skip
        with conn.cursor().copy(f"COPY tasks ({', '.join(TASK_COLUMNS)}) FROM STDIN") as copy:
            for row in task_rows(workflow_id, count):
                copy.write_row(row)
    return workflow_id


# -- the two reads -------------------------------------------------------------------------------


def spark_connector(base_url: str, api_key: str) -> Connector:
    return get_connector("spark")({"base_url": base_url}, {"api_key": api_key})


def connector_read(spark: Connector, since: Any = None) -> tuple[int, int]:
    """Every page of the ``tasks`` stream, as a sync reads it: (records handed on, pages)."""
    stream = spark.get_stream("tasks")
    position: Any = None
    records = pages = 0
    while True:
        page = spark.perform_page(stream, since=since, position=position, params={}).value
        records += len(page.records)
        pages += 1
        if page.finished:
            return records, pages
        position = json.loads(json.dumps(page.position))  # stored as JSON between pages
        del page  # a sync hands the page to the store and lets it go before the next


def listing(base_url: str, api_key: str) -> requests.Response:
    """The whole task listing in one plain ``requests.get`` (its body read)."""
    response = requests.get(
        f"{base_url}/api/v1/tasks",
        params={"limit": LISTING_LIMIT},
        headers={"X-API-Key": api_key},
        timeout=600,
    )
    response.raise_for_status()
    return response


def plain_read(base_url: str, api_key: str) -> int:
    """The plain script: the same listing in one ``requests.get``, parsed whole; its rows."""
    rows = listing(base_url, api_key).json()
    return len(rows)


def body_bytes(base_url: str, api_key: str) -> int:
    return len(listing(base_url, api_key).content)


# -- measuring -----------------------------------------------------------------------------------


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


def peak_mb(run: Callable[[], Any]) -> tuple[float, Any]:
    """The peak of Python allocations made during ``run`` (tracemalloc), in MB, and its value."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        value = run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / MB, value


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def compare(
    sides: dict[str, Callable[[], Any]], repeats: int, check: Callable[[str, Any], None]
) -> dict[str, Any]:
    """Time each side ``repeats`` times (the order rotated every repeat), then trace each once.

    Returns per side the median seconds, every run's seconds and the peak MB; ``check`` is
    given each side's value (it raises on a wrong count).
    """
    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            took, value = timed(sides[name])
            check(name, value)
            seconds[name].append(took)
    out: dict[str, Any] = {}
    for name in names:
        peak, value = peak_mb(sides[name])
        check(name, value)
        out[name] = {
            "seconds": round(statistics.median(seconds[name]), 3),
            "runs": [round(s, 3) for s in seconds[name]],
            "peak python mb": round(peak, 2),
        }
    return out


def _side_by_side(sides: dict[str, Any], left: str, right: str) -> dict[str, Any]:
    return {
        **sides,
        "seconds ratio": ratio(sides[left]["seconds"], sides[right]["seconds"]),
        "memory ratio": ratio(sides[left]["peak python mb"], sides[right]["peak python mb"]),
    }


def measure(base_url: str, api_key: str, repeats: int, count: int) -> dict[str, Any]:
    """The full and incremental reads against the plain read, on a filled spark."""
    stream = spark_connector(base_url, api_key).get_stream("tasks")
    cursor = newest_updated(count)
    since = run_since(stream, cursor, stream.lookback)
    kept: dict[str, int] = {}

    def check(name: str, value: Any) -> None:
        if name == "plain" and value != count:
            raise RuntimeError(f"the plain read got {value} rows, not {count}")
        if name == "connector" and value[0] != count:
            raise RuntimeError(f"the connector handed on {value[0]} records, not {count}")
        if name == "incremental":
            if not 1 <= value[0] < count:
                raise RuntimeError(f"the incremental read handed on {value[0]} records")
            kept["records"], kept["pages"] = value

    def full() -> tuple[int, int]:
        return connector_read(spark_connector(base_url, api_key))

    def incremental() -> tuple[int, int]:
        return connector_read(spark_connector(base_url, api_key), since)

    def plain() -> int:
        return plain_read(base_url, api_key)

    # Warm up both paths (spark's first query, the connector's manifest, the imports).
    check("connector", full())
    check("plain", plain())
    body = body_bytes(base_url, api_key)
    full_read = _side_by_side(
        compare({"connector": full, "plain": plain}, repeats, check), "connector", "plain"
    )
    pages = full()[1]
    incremental_read = _side_by_side(
        compare({"incremental": incremental, "plain": plain}, repeats, check),
        "incremental",
        "plain",
    )
    return {
        "body mb": round(body / MB, 2),
        "full read": {"pages": pages, **full_read},
        "incremental read, nothing new": {
            "cursor": cursor,
            "since (cursor less the stream's lookback)": since,
            "records handed on": kept.get("records"),
            "pages": kept.get("pages"),
            **incremental_read,
        },
    }


def spark_listing(repeats: int, count: int) -> dict[str, Any]:
    """The ``tasks`` stream of a real spark 0.3.7 holding ``count`` task rows: connector vs
    plain read, full and incremental (module docstring)."""
    from tests.integration.real_spark import SPARK_VERSION, start_real_spark

    print(f"bench: starting automagik-spark {SPARK_VERSION}...", file=sys.stderr, flush=True)
    spark = start_real_spark()
    try:
        db_url = spark.db_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        print(f"bench: filling spark with {count} task rows...", file=sys.stderr, flush=True)
        filled, _ = timed(lambda: fill_tasks(db_url, count))
        result = measure(spark.url, spark.api_key, repeats, count)
    finally:
        spark.stop()
        shutil.rmtree(spark.workdir, ignore_errors=True)
    return {
        "spark": SPARK_VERSION,
        "task rows": count,
        "repeats": repeats,
        "listing limit": LISTING_LIMIT,
        "ijson backend": ijson.backend,
        "plain read": PLAIN_READ,
        "fill seconds (COPY)": round(filled, 2),
        **result,
    }
