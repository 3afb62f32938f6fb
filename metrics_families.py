"""Every metric family of the fleet's domain, declared once: its name, kind, help and labels.

:mod:`metrics` counts only the families declared here with ``source="count"`` (and sets only
those with ``source="gauge"``); the gateway's exporter (:mod:`gateway.fleet_metrics`) reads
those from Redis and computes the ``source="scrape"`` ones when Prometheus asks. The Grafana
dashboard (``docker/grafana/dashboard.json``) queries nothing else (a test checks it).

Names follow Prometheus's conventions: the ``spark_integrations_`` prefix, base units
(seconds), counters ending in ``_total``. Labels are of bounded cardinality: connectors,
actions, streams, queues, outcomes and reasons are the fleet's own or declared by connectors;
connection, sync, bucket and breaker names are managed by operators. Never a record, task, run,
event or delivery id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["FAMILIES", "PREFIX", "Family"]

PREFIX: Final = "spark_integrations_"

Kind = Literal["counter", "gauge"]
Source = Literal["count", "gauge", "scrape"]


@dataclass(frozen=True)
class Family:
    """One metric family.

    Attributes:
        name: The short name processes count under (``"calls"``).
        kind: ``counter`` or ``gauge``.
        source: ``count`` (:func:`metrics.count` in any process), ``gauge``
            (:func:`metrics.gauge`, the last value set anywhere) or ``scrape`` (computed by the
            gateway's exporter when Prometheus asks).
        help: What one unit of it is, for the exposition's HELP line.
        labels: The label names, in exposition order.
    """

    name: str
    kind: Kind
    source: Source
    help: str
    labels: tuple[str, ...]

    @property
    def metric(self) -> str:
        """The family's name in the exposition (a counter's samples add ``_total``)."""
        return PREFIX + self.name

    @property
    def sample(self) -> str:
        """The name of the family's samples, as PromQL queries them."""
        return self.metric + ("_total" if self.kind == "counter" else "")


_DECLARED = (
    # -- calls and requests ---------------------------------------------------------------------
    Family(
        "calls",
        "counter",
        "count",
        "integrations.call tasks that ended, by connector, action and outcome: succeeded, "
        "replayed (an idempotency key's stored outcome), failed (dead-lettered) or "
        "outcome_unknown (dead-lettered; it may have taken effect). Connector and action are "
        "'unknown' for a call naming none the fleet knows.",
        ("connector", "action", "outcome"),
    ),
    Family(
        "attempts",
        "counter",
        "count",
        "Requests sent to providers (call attempts and sync pages), by connector and operation "
        "(the action or stream).",
        ("connector", "operation"),
    ),
    Family(
        "retries",
        "counter",
        "count",
        "Failed requests the fleet sends again after a wait, within the connection's retry "
        "policy, by connector and operation.",
        ("connector", "operation"),
    ),
    Family(
        "rate_limited",
        "counter",
        "count",
        "Answers saying the fleet went too fast (HTTP 429, or a provider's rule meaning the "
        "same), by connector and connection. Stays 0 while the fleet's rate budget holds.",
        ("connector", "connection_id"),
    ),
    Family(
        "deferrals",
        "counter",
        "count",
        "Requests held back before sending, by connector, connection and reason: rate_budget "
        "(no slot of the fleet's rate budget now; the request waits for one instead of meeting "
        "a 429) or circuit (the circuit breaker is open, or another process holds its probe).",
        ("connector", "connection_id", "reason"),
    ),
    # -- rate budgets ---------------------------------------------------------------------------
    Family(
        "budget_grants",
        "counter",
        "count",
        "Requests a rate budget let go, by budget (bucket: 'connector:connection' for a "
        "connection's own, 'connector' for an app-wide one, or a route tier's).",
        ("bucket",),
    ),
    Family(
        "budget_rate",
        "gauge",
        "gauge",
        "Requests per second a rate budget allows as configured, as workers last applied it. "
        "Budget use: rate(spark_integrations_budget_grants_total[1m]) divided by this.",
        ("bucket",),
    ),
    Family(
        "budget_learned_rate",
        "gauge",
        "scrape",
        "Requests per second a provider's rate-limit headers set for a budget (it applies when "
        "lower than the configured rate).",
        ("bucket",),
    ),
    Family(
        "budget_paused_seconds",
        "gauge",
        "scrape",
        "Seconds a budget still grants nothing because the provider said so (a 429's "
        "Retry-After, a window spent until its reset).",
        ("bucket",),
    ),
    Family(
        "budget_backlog_seconds",
        "gauge",
        "scrape",
        "Seconds ahead of now a budget's slots are taken (granted, or planned for waiting "
        "requests): 0 when idle, about one interval while requests go as they come, more "
        "while requests queue for the budget.",
        ("bucket",),
    ),
    # -- circuit breakers -----------------------------------------------------------------------
    Family(
        "breaker_state",
        "gauge",
        "scrape",
        "Circuit breaker state by key (a connector, or 'connector:connection'): 1 for the "
        "state it is in (closed, open, half_open), 0 for the others. Keys without recent "
        "failures are closed and not listed.",
        ("breaker", "state"),
    ),
    Family(
        "breaker_failures",
        "gauge",
        "scrape",
        "Consecutive failures a circuit breaker key has counted.",
        ("breaker",),
    ),
    Family(
        "breaker_transitions",
        "counter",
        "count",
        "Circuit breaker transitions by key and the state entered: open (opened, or reopened "
        "by a failed probe) or closed (a probe succeeded).",
        ("breaker", "state"),
    ),
    # -- tokens ---------------------------------------------------------------------------------
    Family(
        "token_refreshes",
        "counter",
        "count",
        "OAuth token requests (refreshes and client-credentials grants), by connector and "
        "outcome: succeeded, failed (to be tried again), invalid_grant (the connection needs "
        "re-authorisation) or refused (the client's credentials were refused).",
        ("connector", "outcome"),
    ),
    # -- syncs ----------------------------------------------------------------------------------
    Family(
        "sync_runs",
        "counter",
        "count",
        "Sync runs that ended, by connector, stream, sync and outcome (succeeded, failed).",
        ("connector", "stream", "sync_id", "outcome"),
    ),
    Family(
        "sync_pages",
        "counter",
        "count",
        "Pages read and committed by sync runs.",
        ("connector", "stream", "sync_id"),
    ),
    Family(
        "sync_records",
        "counter",
        "count",
        "Records read and committed by sync runs (each record of a committed page, whether or "
        "not the destination found it changed).",
        ("connector", "stream", "sync_id"),
    ),
    Family(
        "sync_lag_seconds",
        "gauge",
        "scrape",
        "Seconds since a sync's last successful run ended (since it was added, when none has "
        "succeeded yet).",
        ("connector", "stream", "sync_id"),
    ),
    # -- dead letters, webhooks, deliveries -----------------------------------------------------
    Family(
        "dead_letters",
        "counter",
        "count",
        "Dead letters written, by the task that gave up.",
        ("task",),
    ),
    Family(
        "webhooks",
        "counter",
        "count",
        "Webhook deliveries at the gateway's intake, by provider, outcome (accepted, "
        "duplicate, handshake: a provider's check answered and nothing stored, refused, "
        "unavailable: the store did not take it) and reason (why refused or unavailable; "
        "'none' otherwise).",
        ("provider", "outcome", "reason"),
    ),
    Family(
        "webhooks_processed",
        "counter",
        "count",
        "Stored webhook events processed, by provider and outcome (processed, failed, retried).",
        ("provider", "outcome"),
    ),
    Family(
        "event_deliveries",
        "counter",
        "count",
        "Deliveries of the fleet's events to subscribers, by outcome (delivered, retried, failed).",
        ("outcome",),
    ),
    # -- the broker and the exporter itself -----------------------------------------------------
    Family(
        "queue_depth",
        "gauge",
        "scrape",
        "Messages waiting in a fleet queue of the broker (taken and unacknowledged ones excluded).",
        ("queue",),
    ),
    Family(
        "broker_held_messages",
        "gauge",
        "scrape",
        "Messages workers have taken from a Redis broker and not yet acknowledged (reliable "
        "fetch: every worker's held messages, those of workers that died included, until they "
        "are given back). Absent on RabbitMQ and with SPARK_INTEGRATIONS_BROKER_FETCH=kombu.",
        (),
    ),
    Family(
        "broker_consumers",
        "gauge",
        "scrape",
        "Workers' consumers of a Redis broker under reliable fetch, by state: alive (proved "
        "alive within SPARK_INTEGRATIONS_RECLAIM_AFTER) or dead (stopped proving it: a living "
        "worker gives back what they held at its next reclaim). Absent on RabbitMQ and with "
        "SPARK_INTEGRATIONS_BROKER_FETCH=kombu.",
        ("state",),
    ),
    Family(
        "scrape_up",
        "gauge",
        "scrape",
        "1 when this scrape read a source of fleet metrics (counters, breakers, budgets, syncs, "
        "queues), 0 when it could not: that source's families are absent from this scrape.",
        ("source",),
    ),
    Family(
        "scrape_errors",
        "counter",
        "scrape",
        "Scrapes of this gateway process that could not read a source of fleet metrics.",
        ("source",),
    ),
)

#: Every family, by short name.
FAMILIES: Final[dict[str, Family]] = {f.name: f for f in _DECLARED}
