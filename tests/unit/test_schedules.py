"""Sync schedules (durations, cron in UTC, next due time) and claiming due runs in the store.

The claims run on real stores (SQLite and PostgreSQL) with real concurrent transactions: two
schedulers reading the same due time must not both claim it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, event, text, update
from sqlalchemy.orm import Session

from spark_integrations.errors import UsageError
from spark_integrations.store import SyncDefinition, session_scope
from spark_integrations.store.engine import _build
from spark_integrations.store.schedules import (
    cron_schedule,
    every_schedule,
    next_due,
    parse_duration,
    validate_schedule,
)
from spark_integrations.store.syncs import add_sync, change_sync, claim_due, get_sync, set_enabled

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


# --- durations and schedules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("2", 2), (" 1.5m ", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "-5s", "1 hour", "0.5s", "0"])
def test_bad_or_too_short_durations_are_refused_in_one_sentence(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert str(caught.value).endswith(".")
    assert "\n" not in str(caught.value)


def test_stored_forms() -> None:
    assert every_schedule("5m") == "every:300"
    assert every_schedule("1.5s") == "every:1.5"
    assert cron_schedule("  */5   *  * * 1-5 ") == "cron:*/5 * * * 1-5"
    assert validate_schedule(None) is None
    assert validate_schedule("every:30") == "every:30"
    assert validate_schedule("cron:0 3 * * *") == "cron:0 3 * * *"


@pytest.mark.parametrize(
    "schedule", ["cron:* * *", "cron:61 * * * *", "cron:* * * * * *", "hourly:1", "every:fast"]
)
def test_malformed_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(UsageError):
        validate_schedule(schedule)


def test_an_interval_is_due_one_period_after_the_last() -> None:
    assert next_due("every:30", T0, now=T0) == T0 + timedelta(seconds=30)
    assert next_due("every:30", T0, now=T0 + timedelta(seconds=29)) == T0 + timedelta(seconds=30)


def test_missed_periods_are_skipped_not_run_one_after_another() -> None:
    # Down for 95 s with a 30 s interval: the periods due at +30, +60 and +90 were missed.
    assert next_due("every:30", T0, now=T0 + timedelta(seconds=95)) == T0 + timedelta(seconds=120)
    # A period due exactly now counts as passed: the next is one period later.
    assert next_due("every:30", T0, now=T0 + timedelta(seconds=60)) == T0 + timedelta(seconds=90)
    # Always in the future, on the grid of the original period.
    for late in (31, 59.5, 600, 86_401):
        due = next_due("every:30", T0, now=T0 + timedelta(seconds=late))
        assert due > T0 + timedelta(seconds=late)
        assert (due - T0).total_seconds() % 30 == 0


def test_cron_is_read_in_utc_whatever_the_zone_given() -> None:
    assert next_due("cron:0 3 * * *", T0, now=T0) == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    # 01:00 at UTC+2 is 23:00 UTC the day before: the next 03:00 UTC is four hours later.
    plus_two = datetime(2026, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    due = next_due("cron:0 3 * * *", plus_two, now=plus_two)
    assert due == datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    assert due.utcoffset() == timedelta(0)


def test_cron_skips_missed_periods_too() -> None:
    now = T0 + timedelta(days=3, minutes=7)
    assert next_due("cron:*/15 * * * *", T0, now=now) == now + timedelta(minutes=8)


# --- claims in the store ----------------------------------------------------------------------


def new_sync(url: str, connection_id: str, schedule: str | None, due: datetime | None) -> str:
    """A sync on ``schedule`` whose next run is due at ``due``."""
    with session_scope(url) as session:
        sync = add_sync(session, connection_id=connection_id, stream="items", schedule=schedule)
        sync.next_run_at = due
        session.flush()
        return sync.id


def due_at(url: str, sync_id: str) -> tuple[datetime | None, datetime | None]:
    with session_scope(url) as session:
        sync = get_sync(session, sync_id)
        return sync.next_run_at, sync.last_scheduled_at


@pytest.fixture
def second_engine(store_url: str) -> Iterator[Engine]:
    """An engine of its own (its own connections), built as the store builds every engine."""
    engine = _build(store_url)
    yield engine
    engine.dispose()


def test_a_new_sync_is_due_one_period_from_now(store_url: str, connection_id: str) -> None:
    with session_scope(store_url) as session:
        sync = add_sync(
            session, connection_id=connection_id, stream="items", schedule="every:60", now=T0
        )
        assert sync.next_run_at == T0 + timedelta(seconds=60)
        on_demand = add_sync(session, connection_id=connection_id, stream="items", schedule=None)
        assert on_demand.next_run_at is None


def test_a_claim_moves_the_due_time_on_by_one_period(store_url: str, connection_id: str) -> None:
    sync_id = new_sync(store_url, connection_id, "every:60", T0)
    with session_scope(store_url) as session:
        assert claim_due(session, T0 - timedelta(seconds=1)) == []  # not due yet
    with session_scope(store_url) as session:
        assert claim_due(session, T0 + timedelta(seconds=1)) == [sync_id]
    assert due_at(store_url, sync_id) == (T0 + timedelta(seconds=60), T0)
    with session_scope(store_url) as session:
        assert claim_due(session, T0 + timedelta(seconds=2)) == []  # that period is taken
    # Missed periods are skipped: claimed 150 s late, the next run is due at +180 s.
    with session_scope(store_url) as session:
        assert claim_due(session, T0 + timedelta(seconds=150)) == [sync_id]
    assert due_at(store_url, sync_id) == (T0 + timedelta(seconds=180), T0 + timedelta(seconds=60))


def test_a_cron_claim_moves_to_the_next_cron_time(store_url: str, connection_id: str) -> None:
    sync_id = new_sync(store_url, connection_id, "cron:*/10 * * * *", T0)
    with session_scope(store_url) as session:
        assert claim_due(session, T0 + timedelta(seconds=3)) == [sync_id]
    assert due_at(store_url, sync_id)[0] == T0 + timedelta(minutes=10)


def test_paused_and_unscheduled_syncs_are_not_claimed(store_url: str, connection_id: str) -> None:
    paused = new_sync(store_url, connection_id, "every:60", T0)
    on_demand = new_sync(store_url, connection_id, None, None)
    unscheduled = new_sync(store_url, connection_id, "every:60", T0)
    with session_scope(store_url) as session:
        set_enabled(session, paused, False)
        change_sync(session, unscheduled, unscheduled=True)
    later = datetime.now(UTC) + timedelta(days=1)
    with session_scope(store_url) as session:
        assert claim_due(session, later) == []
    # Resumed, it is due one period from the resume, not at once for the periods it missed.
    with session_scope(store_url) as session:
        set_enabled(session, paused, True)
        assert claim_due(session, datetime.now(UTC)) == []
    assert on_demand and due_at(store_url, unscheduled) == (None, None)


def test_a_sync_paused_after_the_read_is_not_claimed(
    store_url: str, connection_id: str, second_engine: Engine
) -> None:
    """The claim's compare-and-set also checks ``enabled``: a pause that lands first wins."""
    sync_id = new_sync(store_url, connection_id, "every:60", T0)
    with Session(second_engine) as other, other.begin():
        other.execute(
            update(SyncDefinition).where(SyncDefinition.id == sync_id).values(enabled=False)
        )
    with session_scope(store_url) as session:
        assert claim_due(session, T0 + timedelta(seconds=1)) == []


def row_lock_waiters(engine: Engine) -> int:
    """Sessions of this PostgreSQL database waiting for a lock now (pg_locks, not granted)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid IN (SELECT pid FROM"
                    " pg_stat_activity WHERE datname = current_database())"
                )
            ).scalar_one()
        )


def test_two_schedulers_reading_the_same_due_time_claim_it_once(
    store_url: str, connection_id: str, second_engine: Engine
) -> None:
    """Scheduler A claims and holds its transaction open; B reads the same due time meanwhile.

    On PostgreSQL B's read sees the old due time (A has not committed) and its compare-and-set
    waits on A's row lock (seen in pg_locks: the race), then finds the due time moved on: B
    claims nothing. On SQLite B cannot even begin before A commits (every transaction begins
    IMMEDIATE): B reaches its BEGIN while A's claim is open, then reads the new time.
    """
    sync_id = new_sync(store_url, connection_id, "every:60", T0)
    now = T0 + timedelta(seconds=1)
    postgres = store_url.startswith("postgresql")
    b_blocked = threading.Event()

    @event.listens_for(second_engine, "before_cursor_execute")
    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        # Where B waits for A: its compare-and-set (PostgreSQL), its BEGIN IMMEDIATE (SQLite).
        if statement.lstrip().upper().startswith("UPDATE" if postgres else "BEGIN"):
            b_blocked.set()

    b_claimed: list[list[str]] = []

    def scheduler_b() -> None:
        with Session(second_engine) as session, session.begin():
            b_claimed.append(claim_due(session, now))

    with session_scope(store_url) as a:
        a_claimed = claim_due(a, now)
        b = threading.Thread(target=scheduler_b)
        b.start()
        assert b_blocked.wait(20), "scheduler B never reached the statement that waits for A"
        if postgres:
            deadline = time.monotonic() + 20
            while row_lock_waiters(second_engine) == 0:
                assert time.monotonic() < deadline, "B never waited for A's row lock"
                time.sleep(0.01)
        assert b.is_alive() and b_claimed == [], "scheduler B did not wait for A's claim"
    b.join(timeout=30)
    assert not b.is_alive()
    assert a_claimed == [sync_id]
    assert b_claimed == [[]]
    assert due_at(store_url, sync_id) == (T0 + timedelta(seconds=60), T0)


def test_many_schedulers_racing_claim_each_period_once(store_url: str, connection_id: str) -> None:
    """Four threads claim together, period after period: exactly one claim per period."""
    sync_ids = [new_sync(store_url, connection_id, "every:60", T0) for _ in range(3)]
    racers = 4
    barrier = threading.Barrier(racers)
    claims: list[tuple[int, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def racer() -> None:
        try:
            for period in range(8):
                now = T0 + timedelta(seconds=60 * period + 1)
                barrier.wait(timeout=60)
                with session_scope(store_url) as session:
                    got = claim_due(session, now)
                with lock:
                    claims.extend((period, s) for s in got)
                barrier.wait(timeout=60)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=racer) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(claims) == sorted((p, s) for p in range(8) for s in sync_ids)
