"""The sandbox's ``items`` stream read through the connector framework, page by page.

The sandbox server runs in this process (standard library, its own thread); nothing is mocked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.sandbox import SandboxOptions, SandboxServer

KEY = "sk-stream-" + uuid.uuid4().hex
RECORDS = 250


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(port=0, records=RECORDS, api_key=KEY, seed=3)) as server:
        yield server


def client(server: SandboxServer) -> SandboxConnector:
    return SandboxConnector({"base_url": server.url}, {"api_key": KEY})


def test_every_record_once_across_pages_each_read_by_a_new_client(sandbox: SandboxServer) -> None:
    """Each page is read by a fresh client from the stored position alone, as a chain of
    short tasks would: every record arrives exactly once, in replication-key order."""
    seen: list[dict[str, object]] = []
    position = None
    pages = 0
    while True:
        page = client(sandbox).read_page("items", position=position)
        seen += page.records
        pages += 1
        if page.finished:
            break
        position = page.position
    ids = [r["id"] for r in seen]
    assert len(ids) == RECORDS and len(set(ids)) == RECORDS
    stamps = [str(r["updated_at"]) for r in seen]
    assert stamps == sorted(stamps)
    assert pages == 3  # 100 + 100 + 50


def test_the_since_filter_is_inclusive(sandbox: SandboxServer) -> None:
    """An incremental run from the last cursor reads the record at the cursor again (the upsert
    absorbs it) rather than risking the loss of one updated at the same instant."""
    first = client(sandbox).read_page("items")
    cursor = first.max_replication
    assert cursor == first.records[-1]["updated_at"]
    again = client(sandbox).read_page("items", since=cursor)
    assert again.records[0]["id"] == first.records[-1]["id"]
    assert all(str(r["updated_at"]) >= str(cursor) for r in again.records)
    total = 0
    position = None
    while True:
        page = client(sandbox).read_page("items", since=cursor, position=position)
        total += len(page.records)
        if page.finished:
            break
        position = page.position
    assert total == RECORDS - 100 + 1
