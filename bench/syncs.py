"""Benchmark of ``integrations.sync``: records/s into the record store, and the worker's memory.

One sync of the sandbox's ``items`` stream (100 records a page) into the record store, on
SQLite and on PostgreSQL, against a plain script doing the honest minimum: page through the
same listing with one ``requests.Session`` (same query, same bearer key) and, per page,
bulk-insert the page's rows (same table, same columns, the content hash computed the same way)
with the database's own driver (``executemany``), committing per page as the fleet does.

The fleet runs one worker of one process on the sync queue; each repeat syncs a new sync
definition, so every record takes the store's insert path. Fleet and plain runs alternate
(their order swapped every repeat). The worker's resident memory (``VmRSS``) is sampled every
0.2 s: idle after a warm-up sync of 3,000 records (so the imports, the engine and the
connector are loaded), and its peak during each run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests
from celery import Celery

from bench.harness import (
    CLI,
    EXTRA_FLEET_ARGS,
    LOGS,
    Proc,
    Sandbox,
    add_connection,
    client_app,
    fleet_env,
    wait_for,
    wait_workers,
)
from spark_integrations.tasks.syncs import PAGES_PER_TASK

API_KEY = "sk-bench-" + uuid.uuid4().hex
PAGE = 100
# More pages than one task's share of a run, so the warm-up also goes through a hand-off to a
# continuation (and its first read ahead) before the idle memory is read.
WARM_RECORDS = (PAGES_PER_TASK + 10) * PAGE
SAMPLE_EVERY = 0.2
PLAIN_SCRIPT = (
    "one requests.Session, GET /v1/items?limit=100&cursor=... with the bearer key; per page, "
    "executemany INSERT of (sync_id, key, data, content_hash, first_seen_at, last_changed_at) "
    "into the same records table (a sync of its own) with the driver (sqlite3 with the store's "
    "PRAGMAs / psycopg), one commit per page"
)


# -- the plain script ----------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """Canonical JSON, as the record store writes keys and hashes records."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def plain_rows(
    sync_id: str, records: Sequence[Mapping[str, Any]], stamp: Any
) -> list[tuple[Any, ...]]:
    """One page's rows: (sync_id, key, data, content_hash, first_seen_at, last_changed_at)."""
    return [
        (
            sync_id,
            canonical(record["id"]),
            json.dumps(record),
            hashlib.sha256(canonical(record).encode()).hexdigest(),
            stamp,
            stamp,
        )
        for record in records
    ]


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///...`` URL (``sqlite:////abs/path`` is absolute)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a SQLite file URL: {url}")
    return url[len(prefix) :]


def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as psycopg takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


INSERT_SQL = (
    "INSERT INTO records (sync_id, key, data, content_hash, first_seen_at, last_changed_at) "
    "VALUES ({0}, {0}, {0}, {0}, {0}, {0})"
)


def plain_sync(base_url: str, database_url: str, sync_id: str) -> int:
    """The plain script: read the whole listing and store it; returns the records stored."""
    http = requests.Session()
    if database_url.startswith("sqlite"):
        conn: Any = sqlite3.connect(sqlite_path(database_url), timeout=30)
        # The store's settings (the file is in WAL mode already).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        sql = INSERT_SQL.format("?")
    else:
        conn = psycopg.connect(libpq_url(database_url))
        sql = INSERT_SQL.format("%s")
    stored = 0
    try:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE}
            if cursor:
                params["cursor"] = cursor
            response = http.get(
                base_url + "/v1/items",
                params=params,
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=(3.05, 30),
            )
            response.raise_for_status()
            body = response.json()
            now = datetime.now(UTC)
            # SQLAlchemy keeps SQLite timestamps as text in this form.
            stamp = (
                now.strftime("%Y-%m-%d %H:%M:%S.%f")
                if isinstance(conn, sqlite3.Connection)
                else now
            )
            rows = plain_rows(sync_id, body["data"], stamp)
            if rows:
                conn.cursor().executemany(sql, rows)
                conn.commit()  # one transaction per page
            stored += len(rows)
            cursor = body.get("next_cursor")
            if not cursor:
                return stored
    finally:
        conn.close()
        http.close()


# -- the worker's memory -------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    """A process's resident set (``VmRSS``) in MB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the worker's pool)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name, in parentheses, may hold spaces: the fields follow its last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


class RssSampler:
    """Samples the worker's main process and its pool child every :data:`SAMPLE_EVERY` s."""

    def __init__(self, main_pid: int) -> None:
        self.main_pid = main_pid
        self.peaks = {"main": 0.0, "child": 0.0}
        self.last = {"main": 0.0, "child": 0.0}
        self.child_pids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def sample(self) -> dict[str, float]:
        main = rss_mb(self.main_pid) or 0.0
        pids = children(self.main_pid)
        child = max((rss_mb(p) or 0.0 for p in pids), default=0.0)
        with self._lock:
            self.child_pids.update(pids)
            self.last = {"main": main, "child": child}
            for role, value in self.last.items():
                self.peaks[role] = max(self.peaks[role], value)
        return dict(self.last)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.sample()

    def reset(self) -> None:
        """Start a new peak from the current sample."""
        current = self.sample()
        with self._lock:
            self.peaks = dict(current)

    def peak(self) -> dict[str, float]:
        self.sample()
        with self._lock:
            return dict(self.peaks)

    def idle(self, seconds: float = 2.0) -> dict[str, float]:
        """The median of a few samples while nothing runs."""
        taken = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            taken.append(self.sample())
            time.sleep(SAMPLE_EVERY)
        return {role: statistics.median(s[role] for s in taken) for role in ("main", "child")}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- the fleet -----------------------------------------------------------------------------------


class _Sandbox(Sandbox):
    """A sandbox with a log of its own (two run side by side here)."""

    def __init__(self, env: dict[str, str], name: str, *args: str) -> None:
        Proc.__init__(self, [CLI, "sandbox", "--port=0", *args], env, name)
        found = wait_for(lambda: _listening(self.text()), 120, "the sandbox")
        self.url = found


def _listening(text: str) -> str | None:
    marker = "listening on "
    at = text.find(marker)
    if at < 0:
        return None
    return text[at + len(marker) :].split()[0]


def _sync_worker(env: dict[str, str], backend: str) -> Proc:
    return Proc(
        [
            CLI,
            "worker",
            "--queues=integrations.syncs",
            "--concurrency=1",
            "--",
            f"--hostname=syncbench-{backend}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=WARNING",
            *EXTRA_FLEET_ARGS,
        ],
        env,
        f"sync-worker-{backend}",
    )


@contextmanager
def _store_env(base: dict[str, str], backend: str) -> Iterator[dict[str, str]]:
    """The server-mode environment on the backend's store (PostgreSQL: the run's database)."""
    if backend == "postgresql":
        yield base
        return
    path = LOGS / "sync-bench" / "store.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_sqlite(path)
    env = dict(base, SPARK_INTEGRATIONS_DATABASE_URL=f"sqlite:///{path}")
    subprocess.run([CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
    try:
        yield env
    finally:
        _remove_sqlite(path)


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _new_sync(database_url: str, connection_id: str) -> str:
    from spark_integrations.store import session_scope
    from spark_integrations.store.syncs import add_sync

    with session_scope(database_url) as session:
        return str(add_sync(session, connection_id=connection_id, stream="items", schedule=None).id)


def _fleet_run(app: Celery, sync_id: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    result = app.send_task(
        "integrations.sync",
        kwargs={"sync_id": sync_id, "full_refresh": False},
        queue="integrations.syncs",
    )
    answer = dict(result.get(timeout=3600))
    return time.monotonic() - started, answer


def _plain_run(url: str, database_url: str, sync_id: str) -> tuple[float, int]:
    started = time.monotonic()
    stored = plain_sync(url, database_url, sync_id)
    return time.monotonic() - started, stored


def _backend(
    base: dict[str, str], backend: str, box: Sandbox, warm: Sandbox, repeats: int, records: int
) -> dict[str, Any]:
    rows: dict[str, list[float]] = {"fleet": [], "plain": []}
    growth: dict[str, list[float]] = {"main": [], "child": []}
    runs: list[dict[str, Any]] = []
    with _store_env(base, backend) as env:
        db = env["SPARK_INTEGRATIONS_DATABASE_URL"]
        config = {"rate_limit": 100000}
        cid = add_connection(env, f"sync-{backend}", {**config, "base_url": box.url}, API_KEY)
        warm_cid = add_connection(env, f"warm-{backend}", {**config, "base_url": warm.url}, API_KEY)
        worker = _sync_worker(env, backend)
        app = client_app(env)
        sampler: RssSampler | None = None
        try:
            wait_workers(app, 1)
            sampler = RssSampler(worker.proc.pid)
            _, answer = _fleet_run(app, _new_sync(db, warm_cid))
            if answer.get("records") != WARM_RECORDS:
                raise RuntimeError(f"the warm-up sync stored {answer.get('records')} records")
            _plain_run(warm.url, db, _new_sync(db, warm_cid))
            idle = sampler.idle()
            for r in range(repeats):
                order = ("fleet", "plain") if r % 2 == 0 else ("plain", "fleet")
                run: dict[str, Any] = {"order": list(order)}
                for side in order:
                    sync_id = _new_sync(db, cid)
                    if side == "fleet":
                        sampler.reset()
                        elapsed, answer = _fleet_run(app, sync_id)
                        peak = sampler.peak()
                        if answer.get("records") != records:
                            raise RuntimeError(f"the fleet stored {answer.get('records')} records")
                        run["fleet"] = {
                            "seconds": round(elapsed, 2),
                            "task duration_s": answer.get("duration_s"),
                            "pages": answer.get("pages"),
                            "peak rss mb": {k: round(v, 1) for k, v in peak.items()},
                        }
                        for role in growth:
                            growth[role].append(peak[role] - idle[role])
                    else:
                        elapsed, stored = _plain_run(box.url, db, sync_id)
                        if stored != records:
                            raise RuntimeError(f"the plain script stored {stored} records")
                        run["plain"] = {"seconds": round(elapsed, 2)}
                    rows[side].append(records / elapsed)
                run["ratio"] = round(rows["fleet"][-1] / rows["plain"][-1], 3)
                runs.append(run)
            child_pids = sorted(sampler.child_pids)
        finally:
            if sampler is not None:
                sampler.stop()
            app.close()
            worker.stop()
    fleet = statistics.median(rows["fleet"])
    plain = statistics.median(rows["plain"])
    return {
        "fleet records/s": round(fleet, 1),
        "plain records/s": round(plain, 1),
        "ratio": round(fleet / plain, 3),
        "median of per-repeat ratios": round(
            statistics.median(f / p for f, p in zip(rows["fleet"], rows["plain"], strict=True)), 3
        ),
        "rss idle mb": {k: round(v, 1) for k, v in idle.items()},
        "rss growth mb (peak - idle, median)": {
            k: round(statistics.median(v), 1) for k, v in growth.items()
        },
        "rss growth mb (max)": {k: round(max(v), 1) for k, v in growth.items()},
        "pool child pids seen": child_pids,
        "runs": runs,
    }


def syncs(repeats: int, records: int) -> dict[str, Any]:
    """A sync of ``records`` records on SQLite and PostgreSQL: fleet vs plain, and worker RSS."""
    out: dict[str, Any] = {
        "records": records,
        "page": PAGE,
        "plain script": PLAIN_SCRIPT,
        "rss": f"VmRSS every {SAMPLE_EVERY:g} s; idle after a warm-up sync of {WARM_RECORDS}",
    }
    with fleet_env() as base:
        box = _Sandbox(base, "sync-sandbox", f"--api-key={API_KEY}", f"--records={records}")
        warm = _Sandbox(
            base, "sync-warm-sandbox", f"--api-key={API_KEY}", f"--records={WARM_RECORDS}"
        )
        try:
            for backend in ("sqlite", "postgresql"):
                out[backend] = _backend(base, backend, box, warm, repeats, records)
        finally:
            warm.stop()
            box.stop()
    return out
