"""The fleet's domain metrics, counted from every process (workers, beat, gateway, command line).

``count(family, amount=1.0, **labels)`` adds ``amount`` to a fleet-wide counter;
``gauge(family, value, **labels)`` sets a fleet-wide gauge (the last value set anywhere).
``family`` is a short name declared in :mod:`metrics_families` (``"webhooks"`` for
``spark_integrations_webhooks_total``), with exactly its label names; labels are bounded strings
(never a record id, task id or event id). Neither raises nor blocks the work it counts: an
undeclared family or wrong label names is logged once and dropped.

Why an exporter fed by the shared Redis, and not prometheus-client's multiprocess mode:
multiprocess mode shares a folder of memory-mapped files between the processes of one host, and
its exporter must run on that host. The fleet's workers run on many hosts, prefork children come
and go (each leaving files behind to be cleaned), and the gateway may run anywhere. All of them
already share one coordination Redis. So every process adds its counts to hashes there, and any
gateway's ``/metrics`` reads them (:mod:`gateway.fleet_metrics`): one scrape of any gateway sees
the whole fleet, with no per-host folder and nothing to clean when a child exits.

How a count travels: :func:`count` adds to a dict of this process under a lock (no I/O; about a
microsecond). A daemon thread sends what gathered every :data:`FLUSH_EVERY` seconds in one
pipeline of ``HINCRBYFLOAT`` on one hash per family (``{REDIS_METRICS_PREFIX}c:{family}``; a
field is the labels as compact JSON with sorted keys), and :func:`flush` sends the rest when the
process exits (``atexit``) or a pool child stops (Celery's ``worker_process_shutdown``, which
:mod:`workers.signals` connects). While Redis does not answer, counts are kept and sent once it
does (at most :data:`MAX_PENDING` series). A process killed outright loses its last second.
Gauges are ``HSET`` with the time they were set, and are no longer shown after :data:`GAUGE_TTL`.

Only a configured process sends (:func:`configure`; every entry point does it through
:func:`workers.runtime.prepare`): library use and tests count into nothing.

Fork safety: a child of ``fork()`` (a prefork pool child) starts with an empty buffer, a fresh
lock and no thread of its own until it counts (:mod:`forks`), so nothing its parent had
gathered is sent twice.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis

from spark_integrations.constants import REDIS_METRICS_PREFIX
from spark_integrations.forks import on_fork
from spark_integrations.metrics_families import FAMILIES, Family

__all__ = [
    "FAMILIES",
    "FLUSH_EVERY",
    "Family",
    "configure",
    "count",
    "flush",
    "gauge",
    "read",
    "redis_key",
]

log = logging.getLogger(__name__)

#: Seconds between two sends of what a process counted.
FLUSH_EVERY = 1.0
#: Series (a family and its labels) a process keeps while Redis does not answer.
MAX_PENDING = 10_000
#: Seconds a gauge nobody set again is still shown.
GAUGE_TTL = 600
#: Characters of a label value kept.
MAX_LABEL = 200
#: Seconds to connect to Redis, and to wait for one answer.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0

_INF = float("inf")
_COUNTED = {f.name: frozenset(f.labels) for f in FAMILIES.values() if f.source == "count"}
_GAUGED = {f.name: frozenset(f.labels) for f in FAMILIES.values() if f.source == "gauge"}

# (family, labels as the caller passed them)
_Key = tuple[str, tuple[tuple[str, Any], ...]]


class _Buffer:
    """What one process gathered and has not sent yet, and the thread that sends it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[_Key, float] = {}
        self.gauges: dict[_Key, float] = {}
        self.thread: threading.Thread | None = None
        self.starting = threading.Lock()
        self.sending = threading.Lock()
        self.client: redis.Redis | None = None
        self.failing = False


_buffer = _Buffer()
_url: str | None = None
_refused: set[tuple[str, tuple[str, ...]]] = set()


def redis_key(family: Family) -> str:
    """The Redis hash holding a counted (``c:``) or gauged (``g:``) family."""
    return f"{REDIS_METRICS_PREFIX}{'g' if family.source == 'gauge' else 'c'}:{family.name}"


def configure(url: str | None) -> None:
    """Send this process's counts to the Redis at ``url`` (``None``: count into nothing, and
    drop what is held). Returns once a send in progress has ended, so nothing more is written
    to the Redis it was sending to."""
    global _url
    buffer = _buffer
    with buffer.sending, buffer.lock:
        _url = url
        _forget_client(buffer)
        if url is None:
            buffer.counts.clear()
            buffer.gauges.clear()


def count(family: str, amount: float = 1.0, /, **labels: str) -> None:
    """Add ``amount`` to the counter ``family`` with ``labels`` (best effort, never raises)."""
    if _url is None:
        return
    try:
        names = _COUNTED.get(family)
        if names is None or labels.keys() != names or not 0 <= amount < _INF:
            _refuse(family, labels, "a counter")
            return
        _add(_buffer, _buffer.counts, (family, tuple(labels.items())), amount, True)
    except Exception:  # unhashable label values, a non-number: never the caller's problem
        _refuse(family, labels, "a counter")


def gauge(family: str, value: float, /, **labels: str) -> None:
    """Set the gauge ``family`` with ``labels`` to ``value``, fleet-wide (never raises)."""
    if _url is None:
        return
    try:
        names = _GAUGED.get(family)
        if names is None or labels.keys() != names or not -_INF < value < _INF:
            _refuse(family, labels, "a gauge")
            return
        _add(_buffer, _buffer.gauges, (family, tuple(labels.items())), float(value), False)
    except Exception:
        _refuse(family, labels, "a gauge")


def _add(buffer: _Buffer, into: dict[_Key, float], key: _Key, amount: float, add: bool) -> None:
    with buffer.lock:
        held = into.get(key)
        if held is None:
            if len(into) >= MAX_PENDING:
                return
            into[key] = amount
        else:
            into[key] = held + amount if add else amount
    if buffer.thread is None:
        _start(buffer)


def _refuse(family: str, labels: dict[str, Any], what: str) -> None:
    """Log a family or label set the registry does not declare, once per process and shape."""
    try:
        shape = (family, tuple(sorted(labels)))
        if shape in _refused:
            return
        _refused.add(shape)
        declared = FAMILIES.get(family)
        log.warning(
            "metrics: dropped %s for %r with labels %s (declared: %s)",
            what,
            family,
            list(shape[1]),
            "no such family" if declared is None else f"{declared.kind} {list(declared.labels)}",
        )
    except Exception:  # logging must not raise into the caller either
        pass


def _start(buffer: _Buffer) -> None:
    with buffer.starting:
        if buffer.thread is not None:
            return
        thread = threading.Thread(target=_run, args=(buffer,), name="metrics-flush", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # the interpreter is shutting down: the exit's flush sends them
            return
        buffer.thread = thread


def _run(buffer: _Buffer) -> None:
    while buffer is _buffer:  # a child after fork has a buffer of its own
        time.sleep(FLUSH_EVERY)
        _send(buffer)


def flush() -> bool:
    """Send what this process gathered now (at exit, when a pool child stops); True when sent."""
    return _send(_buffer)


def _field(labels: Iterable[tuple[str, Any]]) -> str:
    values = {k: (v if isinstance(v, str) else str(v))[:MAX_LABEL] for k, v in labels}
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _send(buffer: _Buffer) -> bool:
    try:
        with buffer.sending:
            with buffer.lock:
                counts, buffer.counts = buffer.counts, {}
                gauges, buffer.gauges = buffer.gauges, {}
                url = _url
            if not counts and not gauges:
                return True
            if url is None:
                return False
            try:
                _write(buffer, url, counts, gauges)
            except Exception as exc:  # Redis down or refusing: keep the counts for later
                _keep(buffer, counts, gauges)
                _forget_client(buffer)
                if not buffer.failing:
                    buffer.failing = True
                    log.warning("metrics: Redis does not take the counts (%s)", type(exc).__name__)
                return False
            if buffer.failing:
                buffer.failing = False
                log.info("metrics: Redis takes the counts again")
            return True
    except Exception:  # the flushing thread must never die of a surprise
        log.exception("metrics: sending the counts failed")
        return False


def _write(buffer: _Buffer, url: str, counts: dict[_Key, float], gauges: dict[_Key, float]) -> None:
    client = buffer.client
    if client is None:
        client = buffer.client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            health_check_interval=30,
        )
    summed: dict[tuple[str, str], float] = {}
    for (family, labels), amount in counts.items():
        where = (redis_key(FAMILIES[family]), _field(labels))
        summed[where] = summed.get(where, 0.0) + amount
    pipe = client.pipeline(transaction=False)
    for (key, field), amount in summed.items():
        pipe.hincrbyfloat(key, field, amount)
    now = int(time.time())
    touched = set()
    for (family, labels), value in gauges.items():
        key = redis_key(FAMILIES[family])
        pipe.hset(key, _field(labels), f"{value!r} {now}")
        touched.add(key)
    for key in touched:
        pipe.expire(key, GAUGE_TTL)
    pipe.execute()


def _keep(buffer: _Buffer, counts: dict[_Key, float], gauges: dict[_Key, float]) -> None:
    """Put counts that were not sent back (gauges only where none was set since)."""
    with buffer.lock:
        for key, amount in counts.items():
            held = buffer.counts.get(key)
            if held is not None:
                buffer.counts[key] = held + amount
            elif len(buffer.counts) < MAX_PENDING:
                buffer.counts[key] = amount
        for key, value in gauges.items():
            if key not in buffer.gauges and len(buffer.gauges) < MAX_PENDING:
                buffer.gauges[key] = value


def _forget_client(buffer: _Buffer) -> None:
    client, buffer.client = buffer.client, None
    if client is not None:
        with contextlib.suppress(Exception):  # a broken client closes as it can
            client.close()


def read(client: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every counted and gauged family's series as Redis holds them, in one round trip.

    Returns, by family name, (labels, value) pairs; a field whose labels are not the family's
    (written by a process of another version) and a gauge older than :data:`GAUGE_TTL` are
    left out.

    Raises:
        redis.RedisError: Redis did not answer.
    """
    families = [f for f in FAMILIES.values() if f.source in ("count", "gauge")]
    pipe = client.pipeline(transaction=False)
    for family in families:
        pipe.hgetall(redis_key(family))
    replies = pipe.execute()
    now = time.time()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family, raw in zip(families, replies, strict=True):
        series = []
        for field, value in raw.items():
            labels = _labels(field, family)
            number = _value(value, family, now)
            if labels is not None and number is not None:
                series.append((labels, number))
        found[family.name] = series
    return found


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _labels(field: Any, family: Family) -> dict[str, str] | None:
    try:
        labels = json.loads(_text(field))
    except ValueError:
        return None
    if not isinstance(labels, dict) or set(labels) != set(family.labels):
        return None
    return {k: str(v) for k, v in labels.items()}


def _value(raw: Any, family: Family, now: float) -> float | None:
    try:
        if family.source != "gauge":
            return float(_text(raw))
        value, _, at = _text(raw).partition(" ")
        return float(value) if now - float(at) <= GAUGE_TTL else None
    except ValueError:
        return None


@on_fork
def _forget_after_fork() -> None:
    # The parent's counts are the parent's to send; its lock may be held by its thread.
    global _buffer
    _buffer = _Buffer()


@atexit.register
def _at_exit() -> None:
    buffer = _buffer
    if buffer.counts or buffer.gauges:
        _send(buffer)
