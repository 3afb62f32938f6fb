"""The record store's upsert: new, changed, unchanged; a page and its cursor commit together."""

from __future__ import annotations

import pytest

from spark_integrations.store import Record, SyncCursor, session_scope
from spark_integrations.store.records import (
    LOOKUP_CHUNK,
    content_hash,
    record_key,
    save_cursor,
    stored_records,
    upsert_records,
)


def page(*records: dict[str, object]) -> list[tuple[object, dict[str, object]]]:
    return [(r["id"], r) for r in records]


def test_new_changed_and_unchanged_records(store_url: str, sync_id: str) -> None:
    with session_scope(store_url) as session:
        done = upsert_records(session, sync_id, page({"id": 1, "v": 1}, {"id": "1", "v": 1}))
    # 1 and "1" are different keys.
    assert (done.new, done.changed, done.unchanged, done.written) == (2, 0, 0, 2)
    with session_scope(store_url) as session:
        first = {r.key: r.last_changed_at for r in stored_records(session, sync_id)}
        again = upsert_records(
            session, sync_id, page({"id": 1, "v": 1}, {"id": "1", "v": 2}, {"id": 2, "v": 0})
        )
    assert (again.new, again.changed, again.unchanged) == (1, 1, 1)
    with session_scope(store_url) as session:
        rows = {r.key: r for r in stored_records(session, sync_id)}
        assert set(rows) == {record_key(1), record_key("1"), record_key(2)}
        assert rows[record_key("1")].data == {"id": "1", "v": 2}
        assert rows[record_key("1")].content_hash == content_hash({"id": "1", "v": 2})
        # The unchanged record was not written again.
        assert rows[record_key(1)].last_changed_at == first[record_key(1)]


def test_a_key_repeated_in_one_page_keeps_the_last_record(store_url: str, sync_id: str) -> None:
    with session_scope(store_url) as session:
        done = upsert_records(session, sync_id, page({"id": 5, "v": 1}, {"id": 5, "v": 2}))
    assert (done.new, done.unchanged) == (1, 0)
    with session_scope(store_url) as session:
        [row] = stored_records(session, sync_id)
        assert row.data == {"id": 5, "v": 2}


def test_a_page_and_its_cursor_commit_together_or_not_at_all(store_url: str, sync_id: str) -> None:
    with pytest.raises(RuntimeError), session_scope(store_url) as session:
        upsert_records(session, sync_id, page({"id": 1}))
        save_cursor(session, sync_id, {"position": "c1"})
        raise RuntimeError("killed between the page and the commit")
    with session_scope(store_url) as session:
        assert session.query(Record).count() == 0
        assert session.get(SyncCursor, sync_id) is None
    with session_scope(store_url) as session:
        upsert_records(session, sync_id, page({"id": 1}))
        save_cursor(session, sync_id, {"position": "c1"})
    with session_scope(store_url) as session:
        save_cursor(session, sync_id, {"position": "c2"})
    with session_scope(store_url) as session:
        assert session.query(Record).count() == 1
        cursor = session.get(SyncCursor, sync_id)
        assert cursor is not None and cursor.value == {"position": "c2"}


def test_an_empty_page_writes_nothing(store_url: str, sync_id: str) -> None:
    with session_scope(store_url) as session:
        assert upsert_records(session, sync_id, []).written == 0


def by_version(record: object) -> object:
    return record["u"]  # type: ignore[index]


def test_each_kind_of_record_in_one_page_counted_and_written_in_order(
    store_url: str, sync_id: str
) -> None:
    """New, changed, unchanged and stale (the store holds a newer version) in one page."""
    with session_scope(store_url) as session:
        upsert_records(
            session,
            sync_id,
            page({"id": "changed", "u": 1}, {"id": "same", "u": 1}, {"id": "stale", "u": 5}),
            version=by_version,
        )
    incoming = page(
        {"id": "stale", "u": 4},
        {"id": "new", "u": 1, "name": "ünïcode"},
        {"id": "same", "u": 1},
        {"id": "changed", "u": 2},
    )
    with session_scope(store_url) as session:
        done = upsert_records(session, sync_id, incoming, version=by_version)
    assert (done.new, done.changed, done.unchanged, done.stale) == (1, 1, 1, 1)
    assert done.written_keys == (
        (record_key("new"), content_hash({"id": "new", "u": 1, "name": "ünïcode"})),
        (record_key("changed"), content_hash({"id": "changed", "u": 2})),
    )
    with session_scope(store_url) as session:
        rows = {r.key: r.data for r in stored_records(session, sync_id)}
    assert rows == {
        record_key("changed"): {"id": "changed", "u": 2},
        record_key("same"): {"id": "same", "u": 1},
        record_key("stale"): {"id": "stale", "u": 5},
        record_key("new"): {"id": "new", "u": 1, "name": "ünïcode"},
    }


def test_a_page_larger_than_a_lookup(store_url: str, sync_id: str) -> None:
    """More records than one lookup takes (SQLite's IN lists are chunked)."""
    count = LOOKUP_CHUNK * 2 + 7
    first = [(n, {"id": n, "u": 1}) for n in range(count)]
    with session_scope(store_url) as session:
        assert upsert_records(session, sync_id, first, version=by_version).new == count
    again = [(n, {"id": n, "u": 2 if n % 3 == 0 else 1}) for n in range(count)]
    with session_scope(store_url) as session:
        done = upsert_records(session, sync_id, again, version=by_version)
    changed = len(range(0, count, 3))
    assert (done.new, done.changed, done.unchanged) == (0, changed, count - changed)
    with session_scope(store_url) as session:
        rows = {r.key: r for r in stored_records(session, sync_id)}
    assert len(rows) == count
    assert rows[record_key(3)].data == {"id": 3, "u": 2}
    assert rows[record_key(3)].content_hash == content_hash({"id": 3, "u": 2})
    assert rows[record_key(4)].data == {"id": 4, "u": 1}


def test_without_versions_a_changed_record_is_always_written(store_url: str, sync_id: str) -> None:
    with session_scope(store_url) as session:
        upsert_records(session, sync_id, page({"id": 1, "u": 5}))
    with session_scope(store_url) as session:
        done = upsert_records(session, sync_id, page({"id": 1, "u": 4}))
    assert (done.changed, done.stale) == (1, 0)
    with session_scope(store_url) as session:
        [row] = stored_records(session, sync_id)
        assert row.data == {"id": 1, "u": 4}


def test_new_keys_are_the_keys_the_page_inserted_in_its_order(store_url: str, sync_id: str) -> None:
    """What ``--deliver new`` sends: keys never stored for the sync, whatever else the page
    holds (changed, unchanged, stale records), on each backend."""
    with session_scope(store_url) as session:
        first = upsert_records(
            session, sync_id, page({"id": "b", "u": 1}, {"id": "a", "u": 1}, {"id": "s", "u": 9})
        )
    assert first.new_keys == (record_key("b"), record_key("a"), record_key("s"))
    incoming = page(
        {"id": "z", "u": 1},
        {"id": "a", "u": 2},  # changed
        {"id": "b", "u": 1},  # unchanged
        {"id": "s", "u": 3},  # stale
        {"id": 7, "u": 1},
        {"id": "z", "u": 2},  # repeated in the page: still one new key
    )
    with session_scope(store_url) as session:
        done = upsert_records(session, sync_id, incoming, version=by_version)
    assert done.new_keys == (record_key("z"), record_key(7))
    assert (done.new, done.changed, done.unchanged, done.stale) == (2, 1, 1, 1)
    assert [key for key, _ in done.written_keys] == [
        record_key("z"),
        record_key("a"),
        record_key(7),
    ]
    # A page whose transaction was rolled back stored nothing: its keys are new again.
    with pytest.raises(RuntimeError), session_scope(store_url) as session:
        assert upsert_records(session, sync_id, page({"id": "q"})).new_keys == (record_key("q"),)
        raise RuntimeError("killed before the commit")
    with session_scope(store_url) as session:
        assert upsert_records(session, sync_id, page({"id": "q"})).new_keys == (record_key("q"),)
        assert upsert_records(session, sync_id, []).new_keys == ()
