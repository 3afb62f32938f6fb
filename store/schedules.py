"""Sync schedules: an interval or a cron expression in UTC, and when each is next due.

A schedule is kept as text: ``every:SECONDS`` or ``cron:EXPR`` (five fields, UTC). Cron
expressions are read by croniter, the scheduler library most Python schedulers build on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from croniter import CroniterError, croniter

from spark_integrations.constants import SCHEDULE_CRON, SCHEDULE_EVERY
from spark_integrations.errors import UsageError

__all__ = ["cron_schedule", "every_schedule", "next_due", "parse_duration", "validate_schedule"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
#: The shortest interval a schedule may have: beat looks at the store every second.
MIN_INTERVAL = 1.0


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``5m``, ``1h``, ``1d`` (bare numbers are seconds)."""
    found = _DURATION.match(text or "")
    if found is None:
        raise UsageError(f"{text!r} is not a duration; write it like 30s, 5m, 1h or 1d.")
    seconds = float(found.group(1)) * _UNITS[found.group(2) or "s"]
    if seconds < MIN_INTERVAL:
        raise UsageError(f"an interval must be at least {MIN_INTERVAL:g} s; {text!r} is shorter.")
    return seconds


def every_schedule(text: str) -> str:
    """The stored form of an interval given like ``5m``."""
    seconds = parse_duration(text)
    return f"{SCHEDULE_EVERY}:{int(seconds) if seconds.is_integer() else seconds!r}"


def cron_schedule(expr: str) -> str:
    """The stored form of a five-field cron expression (UTC), refused when malformed."""
    fields = (expr or "").split()
    if len(fields) != 5 or not croniter.is_valid(" ".join(fields)):
        raise UsageError(
            f"{expr!r} is not a cron expression of five fields (minute hour day month weekday)."
        )
    schedule = f"{SCHEDULE_CRON}:" + " ".join(fields)
    next_due(schedule, datetime.now(UTC))  # an expression that never fires (31 Feb) is refused
    return schedule


def validate_schedule(schedule: str | None) -> str | None:
    """Check a stored-form schedule (``every:N`` or ``cron:EXPR``); None means on demand."""
    if schedule is None:
        return None
    kind, _, value = schedule.partition(":")
    if kind == SCHEDULE_EVERY:
        return every_schedule(value)
    if kind == SCHEDULE_CRON:
        return cron_schedule(value)
    raise UsageError(f"{schedule!r} is not a schedule; use every:SECONDS or cron:EXPR.")


def next_due(schedule: str, after: datetime, *, now: datetime | None = None) -> datetime:
    """The first due time of ``schedule`` after ``after`` that is not in the past.

    Periods missed while no scheduler ran are skipped, not run one after another: a sync reads
    everything that changed anyway, so one run catches up.
    """
    now = now or datetime.now(UTC)
    kind, _, value = schedule.partition(":")
    if kind == SCHEDULE_EVERY:
        step = float(value)
        due = after + timedelta(seconds=step)
        if due <= now:
            missed = int((now - due).total_seconds() // step) + 1
            due += timedelta(seconds=step * missed)
        return due
    if kind == SCHEDULE_CRON:
        base = max(after, now - timedelta(seconds=1))
        try:
            found: datetime = croniter(value, base.astimezone(UTC)).get_next(datetime)
        except (CroniterError, ValueError):
            raise UsageError(f"the cron expression {value!r} never comes due.") from None
        return found.astimezone(UTC)
    raise UsageError(f"{schedule!r} is not a schedule; use every:SECONDS or cron:EXPR.")
