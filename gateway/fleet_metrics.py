"""The fleet's domain metrics in the gateway's ``/metrics``: a prometheus-client collector.

Every process of the fleet counts into the coordination Redis (:mod:`metrics`); this collector
reads those counters when Prometheus scrapes, beside the gateway's own registry, and computes the
gauges that are state rather than events: circuit breakers and rate budgets (coordination Redis,
:mod:`coordination.views`), each sync's lag (the store), each queue's depth and, on a Redis broker
under reliable fetch, the messages workers hold and their consumers alive and dead (the broker).
One scrape of any gateway shows the whole fleet.

Each source is read on a thread of its own and the scrape waits for them together at most
:data:`SCRAPE_TIMEOUT` seconds: a source that fails or is late is left out of that scrape (its
families are absent, never stale or zero), ``spark_integrations_scrape_up{source}`` says 0 and
``spark_integrations_scrape_errors_total{source}`` counts it. The scrape itself always
answers. A source still busy from an earlier scrape (a store that does not answer) is waited for
rather than asked again, so hung reads never pile up.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import redis
from kombu.connection import Connection as KombuConnection
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.orm import Session

from spark_integrations import metrics
from spark_integrations.constants import ALL_QUEUES, REDIS_FETCH_PREFIX
from spark_integrations.coordination.views import breaker_views, budget_views
from spark_integrations.metrics_families import FAMILIES, Family
from spark_integrations.settings import Settings
from spark_integrations.store.syncs import last_successes
from spark_integrations.store.types import utcnow

__all__ = ["SCRAPE_TIMEOUT", "SOURCES", "FetchState", "FleetMetrics", "held_by_consumers"]

log = logging.getLogger("gateway")

#: Seconds one scrape waits for its sources, together.
SCRAPE_TIMEOUT = 2.0
#: Where the fleet's metrics come from, as ``scrape_up`` names them.
SOURCES = ("counters", "breakers", "budgets", "syncs", "queues")
#: The breaker states a key's ``breaker_state`` samples name.
BREAKER_STATES = ("closed", "half_open", "open")

SessionFactory = Callable[[], AbstractContextManager[Session]]


_Family = CounterMetricFamily | GaugeMetricFamily


def _metric(name: str) -> _Family:
    family = FAMILIES[name]
    if family.kind == "counter":
        return CounterMetricFamily(family.metric, family.help, labels=family.labels)
    return GaugeMetricFamily(family.metric, family.help, labels=family.labels)


def _add(metric: _Family, family: Family, labels: Mapping[str, str], value: float) -> None:
    metric.add_metric([labels[name] for name in family.labels], value)


class _Read:
    """One source read on a thread of its own."""

    def __init__(self, read: Callable[[], list[Metric]]) -> None:
        self.result: list[Metric] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(read,), daemon=True)
        self.thread.start()

    def _run(self, read: Callable[[], list[Metric]]) -> None:
        try:
            self.result = read()
        except BaseException as exc:  # reported by the scrape as this source being down
            self.error = exc

    def done(self) -> bool:
        return not self.thread.is_alive()


@dataclass(frozen=True)
class FetchState:
    """Reliable fetch's consumers on a Redis broker: who proves alive and what each holds.

    Attributes:
        alive: Consumers whose alive key is present.
        dead: Consumers in the consumers set whose alive key expired (their messages are
            given back by a living worker's next reclaim).
        held: Messages each consumer has taken and not acknowledged, by consumer id.
    """

    alive: frozenset[str]
    dead: frozenset[str]
    held: dict[str, int]


def held_by_consumers(client: redis.Redis, prefix: str = REDIS_FETCH_PREFIX) -> FetchState:
    """Read the consumers set, then each member's alive key and held hash length, in two
    round trips (the keys :mod:`broker.scripts` describes). A held hash is counted, never read:
    its entries are whole messages."""
    members = sorted(_text(m) for m in client.smembers(prefix + "consumers"))
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.exists(f"{prefix}alive:{member}")
        pipe.hlen(f"{prefix}held:{member}")
    replies = pipe.execute()
    alive = {m for m, live in zip(members, replies[0::2], strict=True) if live}
    return FetchState(
        alive=frozenset(alive),
        dead=frozenset(members) - alive,
        held=dict(zip(members, (int(n) for n in replies[1::2]), strict=True)),
    )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class FleetMetrics(Collector):
    """Reads the fleet's metrics when the registry it is registered in is collected.

    Args:
        settings: Where the coordination Redis, the broker and the store are.
        sessions: Opens a store transaction (the gateway's own factory).
        timeout: Seconds a scrape waits for its sources, together.
    """

    def __init__(
        self, settings: Settings, sessions: SessionFactory, *, timeout: float = SCRAPE_TIMEOUT
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.timeout = timeout
        #: Scrapes of this process that could not read each source.
        self.errors = dict.fromkeys(SOURCES, 0)
        self._lock = threading.Lock()
        self._reads: dict[str, _Read] = {}
        self._down: set[str] = set()
        self._clients: dict[str, redis.Redis] = {}
        self._readers: dict[str, Callable[[], list[Metric]]] = {
            "counters": self.counters,
            "breakers": self.breakers,
            "budgets": self.budgets,
            "syncs": self.syncs,
            "queues": self.queues,
        }

    def describe(self) -> Iterable[Metric]:
        """Every family this collector may yield (registration checks them, without I/O)."""
        return [_metric(f.name) for f in FAMILIES.values()]

    def collect(self) -> Iterator[Metric]:
        """Read every source (at most :attr:`timeout` seconds together) and yield what came."""
        with self._lock:
            reads = {}
            for name in SOURCES:
                held = self._reads.get(name)
                if held is None or held.done():
                    held = self._reads[name] = _Read(self._readers[name])
                reads[name] = held
            deadline = time.monotonic() + self.timeout
            up = _metric("scrape_up")
            errors = _metric("scrape_errors")
            found: list[Metric] = []
            for name, read in reads.items():
                read.thread.join(max(0.0, deadline - time.monotonic()))
                ok = read.done() and read.error is None and read.result is not None
                if ok:
                    assert read.result is not None
                    found.extend(read.result)
                    del self._reads[name]  # the next scrape reads afresh
                self.report(name, ok, read)
                _add(up, FAMILIES["scrape_up"], {"source": name}, 1.0 if ok else 0.0)
                _add(errors, FAMILIES["scrape_errors"], {"source": name}, self.errors[name])
        yield from found
        yield up
        yield errors

    def report(self, name: str, ok: bool, read: _Read) -> None:
        """Count a source that could not be read, and log when it goes down or comes back."""
        if ok:
            if name in self._down:
                self._down.discard(name)
                log.info("metrics: the %s source answers again", name)
            return
        self.errors[name] += 1
        if read.done():
            self.forget_client(name)
        if name not in self._down:
            self._down.add(name)
            why = "no answer in time" if not read.done() else type(read.error).__name__
            log.warning("metrics: the %s source is left out of the scrape (%s)", name, why)

    # -- clients --------------------------------------------------------------------------------

    def client(self, which: str) -> redis.Redis:
        """The Redis a source reads (the broker for ``queues``, the coordination Redis for the
        others), one client per source, dropped when its read failed."""
        held = self._clients.get(which)
        if held is None:
            url = self.settings.redis_url if which != "queues" else self.settings.broker_url
            held = self._clients[which] = redis.Redis.from_url(
                url.replace("redis+socket://", "unix://"),
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
            )
        return held

    def forget_client(self, which: str) -> None:
        held = self._clients.pop(which, None)
        if held is not None:
            with contextlib.suppress(Exception):  # a broken client closes as it can
                held.close()

    # -- the sources ----------------------------------------------------------------------------

    def counters(self) -> list[Metric]:
        """What every process counted, and the gauges they set (the coordination Redis)."""
        found: list[Metric] = []
        for name, series in metrics.read(self.client("counters")).items():
            family, metric = FAMILIES[name], _metric(name)
            for labels, value in series:
                _add(metric, family, labels, value)
            found.append(metric)
        return found

    def breakers(self) -> list[Metric]:
        """Each breaker key's state and consecutive failures (the coordination Redis)."""
        state, failures = _metric("breaker_state"), _metric("breaker_failures")
        for view in breaker_views(self.client("breakers")):
            for name in BREAKER_STATES:
                state.add_metric([view.key, name], 1.0 if view.state == name else 0.0)
            failures.add_metric([view.key], float(view.failures))
        return [state, failures]

    def budgets(self) -> list[Metric]:
        """Each budget bucket's backlog, learned rate and pause (the coordination Redis)."""
        backlog = _metric("budget_backlog_seconds")
        learned = _metric("budget_learned_rate")
        paused = _metric("budget_paused_seconds")
        for view in budget_views(self.client("budgets")):
            backlog.add_metric([view.bucket], view.backlog)
            paused.add_metric([view.bucket], view.paused_for)
            if view.learned_rate is not None:
                learned.add_metric([view.bucket], view.learned_rate)
        return [backlog, learned, paused]

    def syncs(self) -> list[Metric]:
        """Each enabled sync's lag: seconds since its last successful run ended (the store)."""
        lag = _metric("sync_lag_seconds")
        with self.sessions() as session:
            if session.get_bind().dialect.name == "postgresql":
                ms = max(1, int(self.timeout * 1000))
                session.execute(text(f"SET LOCAL statement_timeout = {ms}"))
            rows = last_successes(session)
        now = utcnow()
        for sync_id, connector, stream, since in rows:
            lag.add_metric([connector, stream, sync_id], max(0.0, (now - since).total_seconds()))
        return [lag]

    def queues(self) -> list[Metric]:
        """Messages waiting in each fleet queue (the broker: Redis lists, or AMQP queues), and
        on a Redis broker under reliable fetch what workers hold and whether they live."""
        depth = _metric("queue_depth")
        counts = self.amqp_depths() if self.settings.broker_is_amqp else self.redis_depths()
        for queue, waiting in counts.items():
            depth.add_metric([queue], float(waiting))
        if self.settings.broker_is_amqp or self.settings.broker_fetch != "reliable":
            return [depth]
        held, consumers = _metric("broker_held_messages"), _metric("broker_consumers")
        state = held_by_consumers(self.client("queues"))
        held.add_metric([], float(sum(state.held.values())))
        consumers.add_metric(["alive"], float(len(state.alive)))
        consumers.add_metric(["dead"], float(len(state.dead)))
        return [depth, held, consumers]

    def redis_depths(self) -> dict[str, int]:
        """kombu keeps a queue as one list per priority step: its name, then name+sep+step."""
        pipe = self.client("queues").pipeline(transaction=False)
        for queue in ALL_QUEUES:
            for step in PRIORITY_STEPS:
                pipe.llen(f"{queue}{Channel.sep}{step}" if step else queue)
        lengths = iter(pipe.execute())
        return {queue: sum(next(lengths) for _ in PRIORITY_STEPS) for queue in ALL_QUEUES}

    def amqp_depths(self) -> dict[str, int]:
        """A passive declare of each queue (one not declared yet is left out)."""
        found: dict[str, int] = {}
        with KombuConnection(self.settings.broker_url, connect_timeout=self.timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=self.timeout)
            channel: Any = conn.channel()
            for queue in ALL_QUEUES:
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)
                except conn.channel_errors:
                    channel = conn.channel()  # the broker closed the channel on NOT_FOUND
                    continue
                found[queue] = int(declared.message_count)
        return found
