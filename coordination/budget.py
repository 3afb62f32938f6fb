"""A fleet-wide rate budget: GCRA over several buckets, checked and charged in one Lua call.

Every worker process on every host asks the same Redis before it calls a provider. A call is
usually charged to two buckets at once, the connector's ("sandbox") and its connection's
("sandbox:conn-id"), and must fit both.

Each bucket keeps two times, both in the style of the Generic Cell Rate Algorithm (one number
per bucket, ``T = 1 / rate`` apart):

* the *emission* TAT (theoretical arrival time) decides. A request may go when ``now >= TAT -
  tau`` (``tau``, the burst tolerance, absorbs scheduling jitter) and pushes it on by ``T``. It
  alone bounds what the provider sees, whoever asks and whenever.
* the *planning* TAT spreads the callers that must wait. A refused caller is handed the next
  free planned slot (and the planning TAT moves on by ``T``), so deferred Celery tasks come back
  one per interval instead of all at once, and never sleep in a worker slot. A caller that comes
  back late (its message queued behind others) is simply asked again: if the provider has room
  now, it goes, filling the gap its lateness left; if not, it is handed a new slot. No slot is
  held for a caller that may never come, and lateness never makes the fleet send in a bunch.

Why hand-written: the ``limits`` library offers fixed, moving and sliding windows, but no GCRA,
no planning of future slots and no atomic check across two budgets in one operation; two
separate checks would charge the first budget for a call the second refuses.

Clock: the scripts read Redis ``TIME``, the fleet's one clock (hosts' clocks differ). Times are
kept as integer microseconds. Keys (``prefix`` defaults to ``spark-int:budget:``):

* ``{prefix}tat:{bucket}`` and ``{prefix}plan:{bucket}``: the emission and planning TATs;
  each expires a second after it has passed, when missing state means the same thing.
* ``{prefix}learned:{bucket}``: a hash of what the provider told us: ``rate`` (a tighter rate
  from its headers) and ``pause_until`` (nothing before then, e.g. a 429's Retry-After);
  expires after ``ttl`` (or once the pause is over, whichever is later).

All keys of one call must live on one Redis node (no Redis Cluster hash-slot routing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from spark_integrations.constants import (
    BUDGET_LEARNED_KEY,
    BUDGET_PLAN_KEY,
    BUDGET_TAT_KEY,
    REDIS_BUDGET_PREFIX,
)
from spark_integrations.coordination.scripts import queue_script

__all__ = ["Bucket", "Grant", "RedisRateBudget"]

_US = 1_000_000

# Per bucket i: KEYS[3i-2] tat (emission), KEYS[3i-1] plan, KEYS[3i] learned.
# ARGV[1] horizon (us); then per bucket i: ARGV[2i] configured rate (per second),
# ARGV[2i+1] tau (us; negative: half an interval at the effective rate).
# Returns {allowed 0|1, wait (us), planned 0|1}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS / 3
local tats, plans, periods = {}, {}, {}
local allowed = true
local slot = now
for i = 1, n do
  local rate = tonumber(ARGV[2 * i])
  local tau = tonumber(ARGV[2 * i + 1])
  local learned = redis.call('HMGET', KEYS[3 * i], 'rate', 'pause_until')
  local lrate = tonumber(learned[1] or '')
  if lrate and lrate > 0 and lrate < rate then rate = lrate end
  local period = math.ceil(1000000 / rate)
  if tau < 0 then tau = math.floor(period / 2) end
  local tat = tonumber(redis.call('GET', KEYS[3 * i - 2]) or '0')
  local plan = tonumber(redis.call('GET', KEYS[3 * i - 1]) or '0')
  local earliest = tat - tau
  local pause_until = tonumber(learned[2] or '')
  if pause_until and pause_until > earliest then earliest = pause_until end
  if earliest > now then allowed = false end
  if earliest > slot then slot = earliest end
  if plan > slot then slot = plan end
  tats[i], plans[i], periods[i] = tat, plan, period
end
if allowed then
  for i = 1, n do
    local tat = tats[i]
    if tat < now then tat = now end
    tat = tat + periods[i]
    local ttl = string.format('%d', math.ceil((tat - now) / 1000) + 1000)
    redis.call('SET', KEYS[3 * i - 2], string.format('%d', tat), 'PX', ttl)
    if plans[i] < tat then
      redis.call('SET', KEYS[3 * i - 1], string.format('%d', tat), 'PX', ttl)
    end
  end
  return {1, 0, 0}
end
if slot - now > tonumber(ARGV[1]) then return {0, slot - now, 0} end
for i = 1, n do
  local plan = plans[i]
  if plan < slot then plan = slot end
  plan = plan + periods[i]
  local ttl = string.format('%d', math.ceil((plan - now) / 1000) + 1000)
  redis.call('SET', KEYS[3 * i - 1], string.format('%d', plan), 'PX', ttl)
end
return {0, slot - now, 1}
"""

# KEYS[1] learned, KEYS[2] tat, KEYS[3] plan. ARGV[1] rate or '', ARGV[2] pause (us) or '',
# ARGV[3] ttl (ms).
_LEARN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'rate', ARGV[1]) end
if ARGV[2] ~= '' then
  local target = now + tonumber(ARGV[2])
  local pause_until = tonumber(redis.call('HGET', KEYS[1], 'pause_until') or '0')
  if target > pause_until then
    redis.call('HSET', KEYS[1], 'pause_until', string.format('%d', target))
  end
  for k = 2, 3 do
    local tat = tonumber(redis.call('GET', KEYS[k]) or '0')
    if tat < target then
      local ttl = math.ceil((target - now) / 1000) + 1000
      redis.call('SET', KEYS[k], string.format('%d', target), 'PX', string.format('%d', ttl))
    end
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local keep = tonumber(ARGV[3])
local pause_until = tonumber(redis.call('HGET', KEYS[1], 'pause_until') or '0')
local until_pause = math.ceil((pause_until - now) / 1000) + 1000
if until_pause > keep then keep = until_pause end
redis.call('PEXPIRE', KEYS[1], string.format('%d', keep))
return 1
"""


def _check_rate(rate: float, what: str) -> None:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"{what} must be a finite number of requests per second above 0")


def _check_seconds(value: float, what: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a finite number of seconds, 0 or more")


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")


@dataclass(frozen=True)
class Bucket:
    """One budget a call is charged to.

    Attributes:
        key: The bucket's name, e.g. ``"sandbox"`` (connector-wide) or ``"sandbox:conn-id"``
            (one connection); the budget's prefix is added inside.
        rate: Requests per second configured for the bucket (above 0; fractions allowed).
        burst: Seconds of tolerance (GCRA ``tau``): how far ahead of the even schedule a request
            may go, so ``rate * burst`` extra requests can go at once after an idle spell.
            0 means strictly evenly spaced; ``None`` (the default) half an interval at the
            effective rate, enough to absorb the jitter of workers coming back on schedule.

    Raises:
        ValueError: The key is empty, the rate is not a finite number above 0, or the burst is
            negative or not finite.
    """

    key: str
    rate: float
    burst: float | None = None

    def __post_init__(self) -> None:
        _check_name(self.key, "bucket key")
        _check_rate(self.rate, f"rate of bucket {self.key!r}")
        if self.burst is not None:
            _check_seconds(self.burst, f"burst of bucket {self.key!r}")


@dataclass(frozen=True)
class Grant:
    """The budget's answer to one :meth:`RedisRateBudget.acquire`.

    Attributes:
        allowed: True: send now.
        wait: Seconds until the slot (0 when allowed).
        reserved: True: a future slot was planned for the caller; come back after ``wait`` and
            ask again. False with ``allowed`` False: the slot lies beyond the horizon and
            nothing was planned; wait a while and ask again.
    """

    allowed: bool
    wait: float
    reserved: bool


class RedisRateBudget:
    """Fleet-wide request budgets in Redis, shared by every process that uses the same Redis.

    Build one per Redis client and share it: the Lua scripts are registered with the client
    once, here, and run by SHA (reloaded automatically after a Redis restart).

    Args:
        client: The coordination Redis (``redis.Redis``; decoded or raw responses both work).
        prefix: Prepended to every key this budget writes.
    """

    def __init__(self, client: redis.Redis, prefix: str = REDIS_BUDGET_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._learn = client.register_script(_LEARN)

    @property
    def scripts(self) -> tuple[Script, ...]:
        """The Lua scripts, for :func:`coordination.scripts.load_scripts`."""
        return (self._acquire, self._learn)

    def _tat_key(self, bucket_key: str) -> str:
        return self._prefix + BUDGET_TAT_KEY.format(bucket=bucket_key)

    def _learned_key(self, bucket_key: str) -> str:
        return self._prefix + BUDGET_LEARNED_KEY.format(bucket=bucket_key)

    def _plan_key(self, bucket_key: str) -> str:
        return self._prefix + BUDGET_PLAN_KEY.format(bucket=bucket_key)

    def acquire(self, buckets: Sequence[Bucket], *, horizon: float = 30.0) -> Grant:
        """Ask to send one request now, charged to every bucket at once, atomically.

        Granted when every bucket's emission schedule (with its learned rate and pause) has
        room now. Otherwise the caller is handed the next free planned slot, if it lies within
        ``horizon``: it should come back then and ask again (it is not guaranteed to be
        granted: a caller that comes back late may find its room taken by one that came on
        time, and is then handed a new slot). Beyond the horizon nothing is planned.

        Args:
            buckets: The budgets the call is charged to; each key at most once.
            horizon: The farthest slot, in seconds from now, worth planning.

        Returns:
            The grant: allowed now, planned for later (``reserved``), or neither (too far).

        Raises:
            ValueError: No bucket, a bucket named twice, or a bad horizon.
        """
        return self.acquire_later(self._client, buckets, horizon=horizon)(None)

    def acquire_later(
        self, pipe: Any, buckets: Sequence[Bucket], *, horizon: float = 30.0
    ) -> Callable[[Any], Grant]:
        """:meth:`acquire` queued on a pipeline, to share one round trip with other commands.

        Returns a function that turns this command's reply (from ``pipe.execute()``) into the
        grant. Given the client itself instead of a pipeline, the script runs at once and the
        function ignores its argument.
        """
        if not buckets:
            raise ValueError("acquire needs at least one bucket")
        if len({b.key for b in buckets}) != len(buckets):
            raise ValueError("a bucket key appears more than once in one acquire")
        _check_seconds(horizon, "horizon")
        keys: list[str] = []
        args: list[str] = [str(round(horizon * _US))]
        for bucket in buckets:
            keys += [
                self._tat_key(bucket.key),
                self._plan_key(bucket.key),
                self._learned_key(bucket.key),
            ]
            tau = -1 if bucket.burst is None else round(bucket.burst * _US)
            args += [repr(float(bucket.rate)), str(tau)]
        ran: Any = None
        if pipe is self._client:
            ran = self._acquire(keys=keys, args=args)
        else:
            queue_script(pipe, self._acquire, keys, args)

        def parse(reply: Any) -> Grant:
            result = ran if pipe is self._client else reply
            allowed, wait_us, reserved = (int(x) for x in result)
            return Grant(allowed=bool(allowed), wait=max(wait_us, 0) / _US, reserved=bool(reserved))

        return parse

    def learn(
        self,
        bucket_key: str,
        *,
        rate: float | None = None,
        pause: float | None = None,
        ttl: float = 60.0,
    ) -> None:
        """Record what the provider said about a bucket, for the whole fleet.

        Args:
            bucket_key: The bucket's key, as in :class:`Bucket`.
            rate: A rate learned from the provider's headers. It overwrites the learned rate,
                so a higher value relaxes an earlier one; the effective rate never exceeds the
                configured one, as :meth:`acquire` takes the lower of the two.
            pause: Seconds during which the bucket grants nothing (e.g. a 429's Retry-After).
                Extends, never shortens, a pause in force, and pushes the bucket's emission and
                planning TATs to at least the pause's end, so waiting calls are planned after
                it. When it ends, the bucket's burst tolerance may go at once, as after any
                idle spell (half an interval by default).
            ttl: Seconds the learned state lives without being learned again (kept at least
                until a pause in force is over).

        Raises:
            ValueError: A bad rate (0 or less, NaN, infinite), pause or ttl.
        """
        _check_name(bucket_key, "bucket key")
        if rate is not None:
            _check_rate(rate, "learned rate")
        if pause is not None:
            _check_seconds(pause, "pause")
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl must be a finite number of seconds above 0")
        if rate is None and pause is None:
            return
        self._learn(
            keys=[
                self._learned_key(bucket_key),
                self._tat_key(bucket_key),
                self._plan_key(bucket_key),
            ],
            args=[
                "" if rate is None else repr(float(rate)),
                "" if pause is None else str(math.ceil(pause * _US)),
                str(math.ceil(ttl * 1000)),
            ],
        )

    def forget(self, bucket_key: str) -> None:
        """Drop the learned rate and pause of a bucket.

        Schedules already moved stay as they are: the TATs a pause pushed still hold calls back
        until about the pause's end, and slots already planned are still handed out.

        Args:
            bucket_key: The bucket's key, as in :class:`Bucket`.
        """
        _check_name(bucket_key, "bucket key")
        self._client.delete(self._learned_key(bucket_key))

    def effective_rate(self, bucket: Bucket) -> float:
        """The rate :meth:`acquire` applies to a bucket now: the configured or learned, lower.

        Args:
            bucket: The bucket, with its configured rate.

        Returns:
            Requests per second.
        """
        raw: Any = self._client.hget(self._learned_key(bucket.key), "rate")
        learned = _learned_rate(raw)
        return float(bucket.rate) if learned is None else min(float(bucket.rate), learned)

    def state(self, bucket: Bucket) -> dict[str, float | None]:
        """One bucket's state, for operators (the console), read in one round trip.

        Args:
            bucket: The bucket, with its configured rate.

        Returns:
            ``rate`` (what :meth:`acquire` applies now, requests per second), ``learned_rate``
            (from the provider's headers, or None), ``paused_until`` (Unix time by Redis's
            clock while a pause is in force, else None), ``ahead`` (seconds the emission
            schedule runs ahead of now: 0 when idle, about the burst tolerance when the
            bucket is spent) and ``planned`` (seconds ahead of now of the last slot handed to
            a deferred caller; beyond ``ahead``, times the rate, about how many wait).
        """
        _check_name(bucket.key, "bucket key")
        pipe = self._client.pipeline(transaction=True)
        pipe.time()
        pipe.get(self._tat_key(bucket.key))
        pipe.get(self._plan_key(bucket.key))
        pipe.hmget(self._learned_key(bucket.key), "rate", "pause_until")
        (seconds, micros), tat, plan, (raw_rate, raw_pause) = pipe.execute()
        now = int(seconds) * _US + int(micros)
        learned = _learned_rate(raw_rate)
        pause = int(float(raw_pause)) if raw_pause is not None else 0
        return {
            "rate": float(bucket.rate) if learned is None else min(float(bucket.rate), learned),
            "learned_rate": learned,
            "paused_until": pause / _US if pause > now else None,
            "ahead": max(int(tat or 0) - now, 0) / _US,
            "planned": max(int(plan or 0) - now, 0) / _US,
        }


def _learned_rate(raw: Any) -> float | None:
    """A learned rate as Redis holds it, or None when there is none (or it makes no sense)."""
    if raw is None:
        return None
    try:
        learned = float(raw)
    except ValueError:
        return None
    return learned if math.isfinite(learned) and learned > 0 else None
