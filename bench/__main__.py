"""Run the benchmarks: ``python -m bench [--quick] [--only NAME ...]`` (or ``make bench``).

``--only webhooks`` the gateway's webhook intake (signed deliveries stored on PostgreSQL).
``--only calls`` runs the three call benchmarks (overhead, latency, utilisation); ``--only spark``
the spark connector's ``tasks`` stream against the real automagik-spark 0.3.7 (``spark_listing``,
which needs no Redis of the fleet: spark runs on a ``redis-server`` of its own); ``--only fetch``
call throughput and latency on reliable fetch against kombu's own, side by side, with an A/A
comparison for the noise (``fetch_throughput``, ``fetch_latency``).

Needs this machine's Redis and PostgreSQL (``.ci/services`` starts them). Prints each result as
JSON on stdout as it finishes, and a summary table at the end; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import calls, fetch, spark_listing, syncs, webhooks

GROUPS = {
    "calls": ("overhead", "latency", "utilisation"),
    "spark": ("spark_listing",),
    "fetch": ("fetch_throughput", "fetch_latency"),
}
#: Repeats of the fetch comparison: its A/A noise figure wants more than three.
FETCH_REPEATS = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer calls or records, and one repeat"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=[
            "utilisation",
            "overhead",
            "latency",
            "syncs",
            "calls",
            "spark",
            "spark_listing",
            "webhooks",
            "fetch",
            "fetch_throughput",
            "fetch_latency",
        ],
        default=None,
    )
    args = parser.parse_args(argv)
    only = None
    if args.only:
        only = {n for name in args.only for n in GROUPS.get(name, (name,))}
    repeats = 1 if args.quick else 3
    # The CPU-bound runs first, the long, mostly idle, rate-limited ones last.
    plan: dict[str, Callable[[], dict[str, Any]]] = {
        "overhead": lambda: calls.overhead(repeats, 1000 if args.quick else 5000),
        "latency": lambda: calls.latency(repeats, 100 if args.quick else 300),
        "fetch_throughput": lambda: fetch.fetch_throughput(
            1 if args.quick else FETCH_REPEATS, 1000 if args.quick else 5000, 5
        ),
        "fetch_latency": lambda: fetch.fetch_latency(
            1 if args.quick else FETCH_REPEATS, 100 if args.quick else 1000
        ),
        "syncs": lambda: syncs.syncs(repeats, 10_000 if args.quick else 100_000),
        "webhooks": lambda: webhooks.webhooks(10.0 if args.quick else 30.0),
        "spark_listing": lambda: spark_listing.spark_listing(
            repeats, 2_000 if args.quick else 10_000
        ),
        "utilisation": lambda: calls.utilisation(
            repeats, 500 if args.quick else 2000, 100 if args.quick else 300
        ),
    }
    results: dict[str, Any] = {}
    for name, run in plan.items():
        if only is not None and name not in only:
            continue
        print(f"bench: {name}...", file=sys.stderr, flush=True)
        started = time.monotonic()
        load_before = os.getloadavg()
        results[name] = run()
        results[name]["seconds"] = round(time.monotonic() - started, 1)
        # The machine's load (1, 5, 15 min) before and after: other work skews the figures.
        results[name]["load average"] = {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps({name: results[name]}, default=str), flush=True)
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
