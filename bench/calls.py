"""Benchmarks of ``integrations.call``: rate-limit utilisation, throughput overhead, latency.

Each compares the fleet with plain Celery (and, for latency, a direct ``requests`` call) in the
same run, on the same broker, sandbox and worker count, and reports the median of the repeats.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import requests
from celery import Celery

from bench.harness import (
    Sandbox,
    add_connection,
    client_app,
    fleet_env,
    fleet_workers,
    plain_workers,
    wait_workers,
)

API_KEY = "sk-bench-" + uuid.uuid4().hex


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


def _fleet_batch(app: Celery, cid: str, n: int, tag: str) -> float:
    started = time.monotonic()
    results = [_send_fleet(app, cid, f"{tag}-{i}") for i in range(n)]
    for r in results:
        r.get(timeout=1800)
    return time.monotonic() - started


def _plain_batch(app: Celery, task: str, url: str, n: int, tag: str) -> float:
    started = time.monotonic()
    results = [_send_plain(app, task, url, f"{tag}-{i}") for i in range(n)]
    for r in results:
        r.get(timeout=3600)
    return time.monotonic() - started


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
                    ("fleet", lambda n, t: _fleet_batch(app, cid, n, t), calls),
                    (
                        "celery 50/s",
                        lambda n, t: _plain_batch(app, "bench.plain_call_50", box.url, n, t),
                        plain_calls,
                    ),
                    (
                        "celery 25/s",
                        lambda n, t: _plain_batch(app, "bench.plain_call_25", box.url, n, t),
                        plain_calls,
                    ),
                ):
                    box.reset()
                    time.sleep(1.0)  # the bucket refills: each run starts alike
                    elapsed = run(n, f"u{r}-{name}")
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
    rows: dict[str, list[float]] = {"fleet": [], "celery": []}
    with fleet_env() as env:
        box = Sandbox(env, f"--api-key={API_KEY}")
        workers = fleet_workers(env, 2, 2) + plain_workers(env, 2, 2)
        app = client_app(env)
        try:
            cid = add_connection(env, "over", {"base_url": box.url, "rate_limit": 100000}, API_KEY)
            wait_workers(app, 4)
            _fleet_batch(app, cid, 200, "warm")
            _plain_batch(app, "bench.plain_call", box.url, 200, "warm")
            for r in range(repeats):
                order = ("fleet", "celery") if r % 2 == 0 else ("celery", "fleet")
                for side in order:
                    if side == "fleet":
                        elapsed = _fleet_batch(app, cid, calls, f"o{r}")
                    else:
                        elapsed = _plain_batch(app, "bench.plain_call", box.url, calls, f"o{r}")
                    rows[side].append(calls / elapsed)
        finally:
            app.close()
            for w in workers:
                w.stop()
            box.stop()
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

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    samples: dict[str, list[list[float]]] = {"fleet": [], "celery": [], "requests": []}
    with fleet_env() as env:
        box = Sandbox(env, f"--api-key={API_KEY}")
        workers = fleet_workers(env, 1, 1) + plain_workers(env, 1, 1)
        app = client_app(env)
        session = requests.Session()
        try:
            cid = add_connection(env, "lat", {"base_url": box.url, "rate_limit": 100000}, API_KEY)
            wait_workers(app, 2)
            for i in range(20):  # warm up: connections, caches, scripts
                _send_fleet(app, cid, f"warm-{i}").get(timeout=60)
                _send_plain(app, "bench.plain_call", box.url, f"warm-{i}").get(timeout=60)
            for r in range(repeats):
                fleet, plain, direct = [], [], []
                for i in range(calls):
                    t0 = time.perf_counter()
                    _send_fleet(app, cid, f"l{r}-{i}").get(timeout=60)
                    t1 = time.perf_counter()
                    _send_plain(app, "bench.plain_call", box.url, f"p{r}-{i}").get(timeout=60)
                    t2 = time.perf_counter()
                    session.post(
                        box.url + "/v1/messages",
                        json={"text": f"d{r}-{i}"},
                        headers={"Authorization": f"Bearer {API_KEY}"},
                        timeout=30,
                    ).raise_for_status()
                    t3 = time.perf_counter()
                    fleet.append(t1 - t0)
                    plain.append(t2 - t1)
                    direct.append(t3 - t2)
                samples["fleet"].append(fleet)
                samples["celery"].append(plain)
                samples["requests"].append(direct)
        finally:
            session.close()
            app.close()
            for w in workers:
                w.stop()
            box.stop()
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        out[name] = {
            "p50 ms": statistics.median(pct(run, 0.5) for run in runs),
            "p99 ms": statistics.median(pct(run, 0.99) for run in runs),
        }
    out["fleet - celery p50 ms"] = out["fleet"]["p50 ms"] - out["celery"]["p50 ms"]
    out["fleet - celery p50 ms per repeat"] = [
        pct(f, 0.5) - pct(c, 0.5) for f, c in zip(samples["fleet"], samples["celery"], strict=True)
    ]
    return out
