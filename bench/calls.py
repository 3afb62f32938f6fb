"""Benchmarks of ``integrations.call``: rate-limit utilisation, throughput overhead, latency.

Each compares the fleet with plain Celery (and, for latency, a direct ``requests`` call) in the
same run, on the same broker, sandbox and worker count, and reports the median of the repeats.
The throughput and latency runs take their sides as :class:`Side` values, so that other
comparisons (``bench.fetch``: the fleet on two fetches at once) measure the same way.
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import requests
from celery import Celery

from bench.harness import (
    Proc,
    Sandbox,
    add_connection,
    client_app,
    fleet_env,
    fleet_workers,
    plain_workers,
    wait_workers,
    with_db,
)

API_KEY = "sk-bench-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Side:
    """One side of a comparison.

    ``kind`` is ``fleet`` (fleet workers, ``integrations.call``), ``celery`` (plain Celery
    workers, the same request in a plain task) or ``requests`` (the request made directly, no
    worker: latency only). ``env`` is added to the environment of the side's workers.
    ``broker_db`` (fleet sides) puts the side's workers and messages on a database of the
    benchmark's Redis of their own, so that several fleet sides consume the same queue at once,
    each its own messages. ``keyspace_events`` is the server's ``notify-keyspace-events`` while
    the side is measured (None: left as it is).
    """

    name: str
    kind: str = "fleet"
    env: Mapping[str, str] = field(default_factory=dict)
    broker_db: int | None = None
    keyspace_events: str | None = None

    @property
    def slug(self) -> str:
        """The name as worker names and log files take it."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


FLEET = Side("fleet")
CELERY = Side("celery", kind="celery")
REQUESTS = Side("requests", kind="requests")


def _send_fleet(app: Celery, cid: str, text: str) -> Any:
    """``integrations.call`` creating one message, sent as spark sends it."""
    return app.send_task(
        "integrations.call",
        kwargs={"connection_id": cid, "action": "create_message", "params": {"text": text}},
        queue="integrations.calls",
    )


def _send_plain(app: Celery, task: str, url: str, text: str) -> Any:
    """The plain Celery task making the same request."""
    return app.send_task(task, args=[url, text, API_KEY], queue="bench.plain")


def _batch(send: Callable[[str], Any], n: int, tag: str) -> float:
    """Seconds from sending ``n`` calls to having every result."""
    started = time.monotonic()
    results = [send(f"{tag}-{i}") for i in range(n)]
    for r in results:
        r.get(timeout=3600)
    return time.monotonic() - started


def percentile_ms(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of seconds ``values``, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _rotated(items: Sequence[Any], r: int) -> list[Any]:
    """``items`` in the order of repeat ``r``: rotated by one every repeat (two sides swap)."""
    k = r % len(items)
    return [*items[k:], *items[:k]]


@dataclass
class _Contestant:
    """A side, started: one call to result, or a batch of them."""

    side: Side
    app: Celery
    box_url: str
    cid: str
    session: requests.Session
    server: redis.Redis

    def prepare(self) -> None:
        """Set the server as this side is measured."""
        if self.side.keyspace_events is not None:
            self.server.config_set("notify-keyspace-events", self.side.keyspace_events)

    def send(self, text: str) -> Any:
        if self.side.kind == "fleet":
            return _send_fleet(self.app, self.cid, text)
        return _send_plain(self.app, "bench.plain_call", self.box_url, text)

    def call(self, text: str) -> None:
        if self.side.kind == "requests":
            self.session.post(
                self.box_url + "/v1/messages",
                json={"text": text},
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=30,
            ).raise_for_status()
        else:
            self.send(text).get(timeout=60)

    def batch(self, n: int, tag: str) -> float:
        return _batch(self.send, n, tag)


def _flush(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.flushdb()


@contextlib.contextmanager
def _contest(
    sides: Sequence[Side], count: int, concurrency: int, name: str
) -> Iterator[list[_Contestant]]:
    """The sides started on one environment and one unlimited sandbox, their workers answering.

    Every side with workers has ``count`` of them, each of ``concurrency`` processes.
    """
    with fleet_env() as env:
        server = redis.Redis.from_url(env["BENCH_BROKER"])
        events = str(next(iter(server.config_get("notify-keyspace-events").values()), ""))
        dbs = [with_db(env["BENCH_BROKER"], s.broker_db) for s in sides if s.broker_db is not None]
        for url in dbs:
            _flush(url)
        box = Sandbox(env, f"--api-key={API_KEY}")
        workers: list[Proc] = []
        apps: dict[str, Celery] = {}
        session = requests.Session()
        try:
            cid = add_connection(env, name, {"base_url": box.url, "rate_limit": 100000}, API_KEY)
            contestants = []
            for side in sides:
                side_env = {**env, **side.env}
                if side.broker_db is not None:
                    side_env["SPARK_INTEGRATIONS_BROKER_URL"] = with_db(
                        env["SPARK_INTEGRATIONS_BROKER_URL"], side.broker_db
                    )
                if side.kind == "fleet":
                    workers += fleet_workers(side_env, count, concurrency, side.slug)
                elif side.kind == "celery":
                    workers += plain_workers(side_env, count, concurrency, side.slug)
                url = side_env["SPARK_INTEGRATIONS_BROKER_URL"]
                app = apps[url] if url in apps else apps.setdefault(url, client_app(side_env))
                contestants.append(_Contestant(side, app, box.url, cid, session, server))
            for c in contestants:
                if c.side.kind != "requests":
                    wait_workers(c.app, count, c.side.slug)
            yield contestants
        finally:
            session.close()
            for app in apps.values():
                app.close()
            for w in workers:
                w.stop()
            box.stop()
            server.config_set("notify-keyspace-events", events)
            for url in dbs:
                _flush(url)
            server.close()


def throughput(
    sides: Sequence[Side], repeats: int, calls: int, slices: int = 1
) -> dict[str, list[float]]:
    """Calls/s of each side per repeat, 2 workers x concurrency 2 each, unlimited sandbox.

    After a warm-up of 200 calls each, every repeat runs ``calls`` calls per side in
    ``slices`` batches: one batch per side, one after the other, their order rotated every
    batch, ``slices`` times. Thin slices spread every side evenly over the repeat's minutes, so
    that a change in the machine's load reaches all sides alike.
    """
    rows: dict[str, list[float]] = {s.name: [] for s in sides}
    with _contest(sides, 2, 2, "over") as contestants:
        for c in contestants:
            c.prepare()
            c.batch(200, f"warm-{c.side.slug}")
        for r in range(repeats):
            elapsed = dict.fromkeys(rows, 0.0)
            for k in range(slices):
                for c in _rotated(contestants, r * slices + k):
                    c.prepare()
                    tag = f"o{r}-{k}-{c.side.slug}"
                    elapsed[c.side.name] += c.batch(calls // slices, tag)
            for name, seconds in elapsed.items():
                rows[name].append(calls // slices * slices / seconds)
    return rows


def latency_samples(
    sides: Sequence[Side], repeats: int, calls: int
) -> dict[str, list[list[float]]]:
    """Seconds of each call, send to result, per side and repeat; one call at a time.

    1 worker x concurrency 1 a side. After 20 warm-up calls each, each repeat makes ``calls``
    rounds of one call per side, in the repeat's order (rotated every repeat).
    """
    samples: dict[str, list[list[float]]] = {s.name: [] for s in sides}
    with _contest(sides, 1, 1, "lat") as contestants:
        for i in range(20):  # warm up: connections, caches, scripts
            for c in contestants:
                c.prepare()
                c.call(f"warm-{i}")
        for r in range(repeats):
            order = _rotated(contestants, r)
            runs: dict[str, list[float]] = {c.side.name: [] for c in contestants}
            for i in range(calls):
                for c in order:
                    c.prepare()
                    t0 = time.perf_counter()
                    c.call(f"l{r}-{i}")
                    runs[c.side.name].append(time.perf_counter() - t0)
            for side_name, run in runs.items():
                samples[side_name].append(run)
    return samples


def utilisation(repeats: int, calls: int, plain_calls: int) -> dict[str, Any]:
    """Sandbox at 50/s (burst 0.1 s), 2 workers x concurrency 2: achieved rate / limit, 429s."""
    limit = 50.0
    rows: dict[str, list[tuple[float, int]]] = {"fleet": [], "celery 50/s": [], "celery 25/s": []}
    with fleet_env() as env:
        box = Sandbox(env, f"--api-key={API_KEY}", f"--rate-limit={limit:g}", "--burst=0.1")
        workers = fleet_workers(env, 2, 2) + plain_workers(env, 2, 2)
        app = client_app(env)
        try:
            cid = add_connection(env, "util", {"base_url": box.url, "rate_limit": limit}, API_KEY)
            wait_workers(app, 4)
            for r in range(repeats):
                for name, run, n in (
                    ("fleet", lambda t: _send_fleet(app, cid, t), calls),
                    (
                        "celery 50/s",
                        lambda t: _send_plain(app, "bench.plain_call_50", box.url, t),
                        plain_calls,
                    ),
                    (
                        "celery 25/s",
                        lambda t: _send_plain(app, "bench.plain_call_25", box.url, t),
                        plain_calls,
                    ),
                ):
                    box.reset()
                    time.sleep(1.0)  # the bucket refills: each run starts alike
                    elapsed = _batch(run, n, f"u{r}-{name}")
                    rows[name].append((n / elapsed / limit, int(box.stats()["rate_limited"])))
        finally:
            app.close()
            for w in workers:
                w.stop()
            box.stop()
    return {
        name: {
            "utilisation": statistics.median(u for u, _ in vals),
            "429s": statistics.median(c for _, c in vals),
            "runs": vals,
        }
        for name, vals in rows.items()
    }


def overhead(repeats: int, calls: int) -> dict[str, Any]:
    """Unlimited sandbox, 2 workers x concurrency 2: calls/s of the fleet vs plain Celery.

    The two batches of a repeat run one after the other, their order swapped every repeat.
    """
    rows = throughput([FLEET, CELERY], repeats, calls)
    fleet = statistics.median(rows["fleet"])
    celery = statistics.median(rows["celery"])
    ratios = [f / c for f, c in zip(rows["fleet"], rows["celery"], strict=True)]
    return {
        "fleet calls/s": fleet,
        "celery calls/s": celery,
        "ratio": fleet / celery,
        "ratio per repeat": ratios,
        "median of per-repeat ratios": statistics.median(ratios),
        "runs": rows,
    }


def latency(repeats: int, calls: int) -> dict[str, Any]:
    """One call at a time, send to result: fleet vs plain Celery vs direct requests, p50/p99."""
    samples = latency_samples([FLEET, CELERY, REQUESTS], repeats, calls)
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        out[name] = {
            "p50 ms": statistics.median(percentile_ms(run, 0.5) for run in runs),
            "p99 ms": statistics.median(percentile_ms(run, 0.99) for run in runs),
        }
    out["fleet - celery p50 ms"] = out["fleet"]["p50 ms"] - out["celery"]["p50 ms"]
    out["fleet - celery p50 ms per repeat"] = [
        percentile_ms(f, 0.5) - percentile_ms(c, 0.5)
        for f, c in zip(samples["fleet"], samples["celery"], strict=True)
    ]
    return out
