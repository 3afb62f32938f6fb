"""Reliable fetch against kombu's own on Redis: call throughput and latency, side by side.

Three fleets run at once on the same Redis server, sandbox and PostgreSQL database, each on a
broker database of its own (so each takes only its own messages from ``integrations.calls``):
``reliable`` (``SPARK_INTEGRATIONS_BROKER_FETCH=reliable``, the default), ``kombu`` (``=kombu``,
kombu's ``BRPOP``) and ``kombu again``, a second kombu fleet whose comparison with the first
(A/A) measures what differs between two fleets that should not differ: the noise. The server
sends keyspace notifications (``notify-keyspace-events Kl``, which reliable fetch turns on)
while the reliable fleet is measured and none while a kombu fleet is, as each is deployed.

The workloads are :func:`bench.calls.throughput` (2 workers x 2 processes per fleet; a repeat's
calls in thin batches, the fleets taking turns batch by batch, in an order rotated every batch,
so that the load of whatever else runs on the machine reaches them alike) and
:func:`bench.calls.latency_samples` (1 worker x 1 process per fleet, one call at a time, the
fleets taking turns call by call).
A difference is within the noise when it is no larger than the largest A/A difference of a
repeat.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bench.calls import Side, latency_samples, percentile_ms, throughput

FETCH = "SPARK_INTEGRATIONS_BROKER_FETCH"
RELIABLE = Side("reliable", env={FETCH: "reliable"}, broker_db=1, keyspace_events="Kl")
KOMBU = Side("kombu", env={FETCH: "kombu"}, broker_db=2, keyspace_events="")
KOMBU_AGAIN = Side("kombu again", env={FETCH: "kombu"}, broker_db=3, keyspace_events="")
SIDES = (RELIABLE, KOMBU, KOMBU_AGAIN)


def _spread(values: Sequence[float]) -> float:
    return max(values) - min(values)


def throughput_summary(rows: dict[str, list[float]]) -> dict[str, Any]:
    """Calls/s per fleet (medians), reliable / kombu and the A/A ratio per repeat, the noise."""
    ratios = [r / k for r, k in zip(rows["reliable"], rows["kombu"], strict=True)]
    same = [a / k for a, k in zip(rows["kombu again"], rows["kombu"], strict=True)]
    ratio = statistics.median(ratios)
    noise = max(abs(x - 1) for x in same)
    return {
        **{f"{name} calls/s": statistics.median(values) for name, values in rows.items()},
        "reliable / kombu": ratio,
        "reliable / kombu per repeat": ratios,
        "spread of reliable / kombu": _spread(ratios),
        "A/A kombu again / kombu": statistics.median(same),
        "A/A per repeat": same,
        "noise (largest A/A |ratio - 1|)": noise,
        "within noise": abs(ratio - 1) <= noise,
        "runs": rows,
    }


def latency_summary(samples: dict[str, list[list[float]]]) -> dict[str, Any]:
    """p50 and p99 per fleet (medians of the repeats), reliable - kombu and A/A per repeat."""
    out: dict[str, Any] = {
        name: {
            "p50 ms": statistics.median(percentile_ms(run, 0.5) for run in runs),
            "p99 ms": statistics.median(percentile_ms(run, 0.99) for run in runs),
        }
        for name, runs in samples.items()
    }
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        diffs = [
            percentile_ms(r, q) - percentile_ms(k, q)
            for r, k in zip(samples["reliable"], samples["kombu"], strict=True)
        ]
        same = [
            percentile_ms(a, q) - percentile_ms(k, q)
            for a, k in zip(samples["kombu again"], samples["kombu"], strict=True)
        ]
        diff = statistics.median(diffs)
        noise = max(abs(x) for x in same)
        out[f"reliable - kombu {label} ms"] = diff
        out[f"reliable - kombu {label} ms per repeat"] = diffs
        out[f"A/A kombu again - kombu {label} ms per repeat"] = same
        out[f"{label} noise ms (largest A/A |difference|)"] = noise
        out[f"{label} within noise"] = abs(diff) <= noise
    return out


def fetch_throughput(repeats: int, calls: int, slices: int) -> dict[str, Any]:
    """``calls`` calls per fleet and repeat, in ``slices`` batches: reliable vs kombu vs
    kombu again, unlimited sandbox."""
    out = throughput_summary(throughput(SIDES, repeats, calls, slices))
    return {"calls a repeat": calls, "batches a repeat": slices, "repeats": repeats, **out}


def fetch_latency(repeats: int, calls: int) -> dict[str, Any]:
    """``calls`` calls per fleet and repeat, one at a time: reliable vs kombu vs kombu again."""
    out = latency_summary(latency_samples(SIDES, repeats, calls))
    return {"calls a repeat": calls, "repeats": repeats, **out}
