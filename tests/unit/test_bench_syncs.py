"""The sync benchmark's pure helpers: the plain script writes what the record store writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from bench import syncs
from spark_integrations.store.records import content_hash, record_key


def test_plain_rows_match_the_record_store() -> None:
    record = {
        "id": "item-000042",
        "name": "ümlaut",
        "value": 7,
        "updated_at": "2024-01-01T00:00:00Z",
    }
    stamp = datetime(2024, 1, 2, tzinfo=UTC)
    (row,) = syncs.plain_rows("sync-1", [record], stamp)
    assert row == (
        "sync-1",
        record_key("item-000042"),
        json.dumps(record),
        content_hash(record),
        stamp,
        stamp,
    )


def test_sqlite_path_and_libpq_url() -> None:
    assert syncs.sqlite_path("sqlite:////tmp/x/store.db") == "/tmp/x/store.db"
    with pytest.raises(ValueError):
        syncs.sqlite_path("postgresql://h/db")
    assert (
        syncs.libpq_url("postgresql+psycopg://postgres@127.0.0.1:5432/db")
        == "postgresql://postgres@127.0.0.1:5432/db"
    )


def test_listening_reads_the_sandbox_url() -> None:
    assert syncs._listening("boot\nsandbox listening on http://127.0.0.1:4242 (x)\n") == (
        "http://127.0.0.1:4242"
    )
    assert syncs._listening("starting") is None


def test_rss_and_children_of_a_live_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in syncs.children(os.getpid())
        rss = syncs.rss_mb(child.pid)
        assert rss is not None and rss > 1
    finally:
        child.kill()
        child.wait()
    assert syncs.rss_mb(child.pid) is None
