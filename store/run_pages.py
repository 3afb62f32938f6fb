"""A sync run's pages: each committed fenced on the run's lease, with the sync's cursor and the
next-page position it hands back (the run's memory for catching pagination cycles).

Every page is committed in the same transaction as its records, fenced on the holder
(:mod:`store.runs`): an execution that lost its lease writes nothing more. The commit moves the
run's position and counters and the sync's cursor (never back), and records the position the
page hands back as followed by the run: one row per position (its digest, and the run's page
that handed it back first). So the positions recorded span the run's whole chain of tasks
(hand-offs, takeovers), and a page handing back one of them again is a cycle (A → B → A). The
rows go when the run ends (:func:`store.runs.finish_run`, :func:`store.runs.fail_run`) and
with the run.

This is the hot path of every sync: on PostgreSQL a page's commit is one round trip (the
fence, the position followed, the cursor read under its lock) and a second to move the cursor;
on SQLite (in process) a few small statements. (:mod:`store.driver` says why in SQL.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from spark_integrations.store.driver import Driver
from spark_integrations.store.types import utcnow

if TYPE_CHECKING:
    from spark_integrations.store.runs import RunState

__all__ = ["Committed", "commit_page", "follow_position", "later", "move_cursor", "position_digest"]


def later(a: Any, b: Any) -> Any:
    """The greater of two cursor values (None is smallest; mixed types compare as text)."""
    if a is None:
        return b
    if b is None:
        return a
    try:
        return b if b > a else a
    except TypeError:
        return b if str(b) > str(a) else a


_RECORD = "INSERT INTO sync_run_positions (run_id, digest, page) VALUES (:run_id, :digest, :page)"
_ADD = _RECORD + " ON CONFLICT DO NOTHING"
_FOLLOW = _ADD + " RETURNING page"
_UNDO_ADD = (
    "DELETE FROM sync_run_positions WHERE run_id = :run_id AND digest = :digest AND page = :page"
)
#: The page of the run that first handed back a position (none: the run never followed it).
_FIRST_PAGE = "SELECT page FROM sync_run_positions WHERE run_id = :run_id AND digest = :digest"


def position_digest(position: Any) -> str:
    """SHA-256 of a position's canonical JSON: all a run keeps of a position it followed."""
    text = json.dumps(position, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Committed:
    """How :func:`commit_page` went; true when the page is committed (the caller held the run)."""

    held: bool
    #: With ``follow``: the run's page that first handed back the position this page hands
    #: back, when the run followed it before (a cycle, A → B → A); otherwise None.
    loop_from: int | None = None

    def __bool__(self) -> bool:
        return self.held


# The sync's cursor moved from the value this run last saw (its own last write, as text).
_CAS_CURSOR = (
    "UPDATE sync_cursors SET value = :cursor, updated_at = :now "
    "WHERE sync_id = :sync_id AND CAST(value AS text) = :expected"
)
# One round trip for a page's commit on PostgreSQL: the fence on the lease, the position
# followed (``seen`` is read in the statement's snapshot: a position the run recorded before
# this page) and the sync's cursor moved, compared-and-set: it moves from the value this run
# last saw (its own last write, as text) to the page's. Another run's write in between (a
# backfill beside an incremental run), or no cursor stored yet, leaves it unmoved here, and the
# caller reads it under a lock and moves it then. The cursor as stored before the statement
# comes back too: a page that does not move it may find another run moved it.
_PG_COMMIT = f"""
WITH seen AS (
    SELECT page FROM sync_run_positions
    WHERE run_id = :run_id AND digest = CAST(:digest AS varchar)
), fenced AS (
    UPDATE sync_runs SET position = :position, cursor = :cursor, pending_cursor = :pending,
        pages = pages + 1, records = records + :records, retries = retries + :retries,
        deferred = deferred + :deferred, heartbeat_at = :now, stalls = 0,
        holder = CASE WHEN :release AND NOT EXISTS (SELECT 1 FROM seen) THEN NULL ELSE holder END
    WHERE id = :run_id AND holder = :holder AND status = 'running'
    RETURNING pages
), followed AS (
    INSERT INTO sync_run_positions (run_id, digest, page)
    SELECT :run_id, CAST(:digest AS varchar), pages FROM fenced
    WHERE CAST(:digest AS varchar) IS NOT NULL
    ON CONFLICT DO NOTHING
), moved AS (
    {_CAS_CURSOR} AND :advance AND EXISTS (SELECT 1 FROM fenced) RETURNING 1
)
SELECT (SELECT count(*) FROM fenced), (SELECT page FROM seen), (SELECT count(*) FROM moved),
    (SELECT value FROM sync_cursors WHERE sync_id = :sync_id)
"""
_FENCE = """
UPDATE sync_runs SET position = :position, cursor = :cursor, pending_cursor = :pending,
    pages = pages + 1, records = records + :records, retries = retries + :retries,
    deferred = deferred + :deferred, heartbeat_at = :now, stalls = 0,
    holder = CASE WHEN :release THEN NULL ELSE holder END
WHERE id = :run_id AND holder = :holder AND status = 'running'
"""
_CURSOR = "SELECT value FROM sync_cursors WHERE sync_id = :sync_id"
# A first cursor is inserted only where none is stored: a run that finds one inserted meanwhile
# (by a run it waited on) reads it under the lock and moves it only forward.
_FIRST_CURSOR = (
    "INSERT INTO sync_cursors (sync_id, value, updated_at) VALUES (:sync_id, :cursor, :now) "
    "ON CONFLICT (sync_id) DO NOTHING RETURNING 1"
)
_SET_CURSOR = "UPDATE sync_cursors SET value = :cursor, updated_at = :now WHERE sync_id = :sync_id"
_RUN_CURSOR = "UPDATE sync_runs SET cursor = :cursor WHERE id = :run_id"


def commit_page(
    session: Session,
    state: RunState,
    *,
    position: Any,
    page_max: Any,
    records: int,
    retries: int,
    deferred: int,
    release: bool,
    follow: bool = False,
    order: str = "oldest_first",
    page_cursor: Any = None,
) -> Committed:
    """Record one delivered page of a run, in the caller's transaction with its records.

    The sync's cursor moves to the greater of its stored value and the page's highest
    replication value (never back: a backfill and an incremental run may interleave); the
    run's ``cursor`` is the sync's cursor as this page left it. Returns a false
    :class:`Committed`, writing nothing, when the caller no longer holds the run: it must roll
    back.

    A ``newest_first`` or ``delta`` stream's page leaves the sync's cursor where it is: the
    run keeps the cursor it will hand the sync when it finishes in its ``pending_cursor``,
    written in the same statement as the position (the highest replication value read so far,
    or the delta cursor the page hands back), and :func:`store.runs.finish_run` moves the
    sync's cursor to it. A run killed meanwhile resumes at its position with its fixed
    ``since``, and the sync's cursor never passed a record it did not read.

    Args:
        position: where the run goes on (the position the page handed back).
        order: the stream's order (:data:`connectors.streams.ORDERS`).
        page_cursor: a delta stream's cursor, handed back by the listing's last page.
        follow: also record ``position`` as followed by this page, as :func:`follow_position`
            does, in the same round trip; a position the run followed before is a cycle:
            reported as ``loop_from``, and the run is then not released, whatever ``release``
            says (the caller ends it).
    """
    driver = Driver(session)
    pending = state.pending_cursor
    if order == "newest_first":
        pending, page_max = later(pending, page_max), None
    elif order == "delta":
        pending, page_max = (pending if page_cursor is None else page_cursor), None
    # The sync's cursor is at least what this run last saw (it never moves back, and cannot
    # be reset while a run is in progress): a page below it leaves it where it is.
    moved = later(state.cursor, page_max)
    advance = moved != state.cursor
    params: dict[str, Any] = {
        "run_id": state.run_id,
        "holder": state.holder,
        "sync_id": state.sync_id,
        "digest": position_digest(position) if follow else None,
        "position": driver.json(position),
        "cursor": driver.json(moved),
        "pending": driver.json(pending),
        "advance": advance,
        "expected": json.dumps(state.cursor),
        "records": records,
        "retries": retries,
        "deferred": deferred,
        "now": driver.stamp(utcnow()),
        "release": release,
    }
    if driver.postgres:
        row: tuple[Any, ...] = tuple(driver.run(_PG_COMMIT, params).one())
        held, loop_from, done, stored = row
        if not held:
            return Committed(False)
    else:
        # The position first: the fence's release depends on it being no cycle.
        loop_from, added = None, False
        if follow:
            added = bool(driver.run(_ADD, {**params, "page": state.pages + 1}).rowcount)
            if not added:
                loop_from = driver.run(_FIRST_PAGE, params).scalar()
        params["release"] = release and loop_from is None
        if not driver.run(_FENCE, params).rowcount:
            if added:  # a holder that lost the run writes nothing
                driver.run(_UNDO_ADD, {**params, "page": state.pages + 1})
            return Committed(False)
        done, stored = False, None
        if advance:
            done = driver.run(_CAS_CURSOR, params).rowcount > 0
        else:
            stored = driver.loads(driver.run(_CURSOR, params).scalar())
    if advance and not done:
        moved = move_cursor(driver, params, page_max)
    elif not advance and stored is not None and stored != state.cursor:
        # Another run moved the sync's cursor beyond this page: the run's cursor follows it.
        moved = later(stored, page_max)
        driver.run(_RUN_CURSOR, {**params, "cursor": driver.json(moved)})
    state.position = position
    state.cursor = moved
    state.pending_cursor = pending
    state.pages += 1
    state.records += records
    state.retries += retries
    state.deferred += deferred
    return Committed(True, loop_from)


def move_cursor(driver: Driver, params: dict[str, Any], page_max: Any) -> Any:
    """Move the sync's cursor read under a lock (PostgreSQL) to the page's, if greater; the
    run's cursor with it. Returns the sync's cursor.

    Where no cursor is stored yet, two runs (a backfill beside an incremental run) may both
    find none: the first insert wins, and the other, having waited for it, compares with what
    it stored instead of overwriting it, so the cursor never moves back.
    """
    lock = " FOR UPDATE" if driver.postgres else ""
    found = driver.run(_CURSOR + lock, params).first()
    if (
        found is None
        and driver.run(_FIRST_CURSOR, {**params, "cursor": driver.json(page_max)}).first()
    ):
        moved = page_max
    else:
        if found is None:  # inserted by another run since: read it under the lock
            found = driver.run(_CURSOR + lock, params).first()
        stored = None if found is None else driver.loads(found[0])
        moved = later(stored, page_max)
        if moved != stored:
            driver.run(_SET_CURSOR, {**params, "cursor": driver.json(moved)})
    driver.run(_RUN_CURSOR, {**params, "cursor": driver.json(moved)})
    return moved


def follow_position(session: Session, state: RunState, position: Any) -> int | None:
    """Record that the run goes on at ``position``, handed back by the page being committed.

    Call it in the transaction of that page's commit (:func:`commit_page`, fenced on
    the lease, so a holder that lost the run records nothing; ``commit_page(follow=True)`` does
    both in one round trip). The positions recorded are exactly those the run's position has
    taken, whichever task of the run committed them: a page asked again after a retry, a
    hand-off or a takeover is asked at the run's current position, and hands back a *next*
    one, which is new unless the provider cycles.

    Returns:
        ``None`` when the run never followed ``position``; otherwise the number of the run's
        page that handed it back first: the pages since form a cycle (A → B → A).
    """
    driver = Driver(session)
    row = {"run_id": state.run_id, "digest": position_digest(position), "page": state.pages + 1}
    if driver.run(_FOLLOW, row).first() is not None:
        return None
    first: int | None = driver.run(_FIRST_PAGE, row).scalar()
    return first
