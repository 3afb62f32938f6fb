"""A fleet-wide rate budget: GCRA over several buckets, checked and charged in one Lua call.

Every worker process on every host asks the same Redis before it calls a provider. A call is
usually charged to two buckets at once, the connector's ("sandbox") and its connection's
("sandbox:conn-id"), and must fit both. Each bucket runs the Generic Cell Rate Algorithm: it
keeps one number, the theoretical arrival time (TAT) of the next request; a request may go at
``TAT - tau`` (``tau`` is the burst tolerance in seconds) and pushes the TAT on by one interval
``T = 1 / rate``. A caller whose slot lies in the near future does not poll: it *reserves* that
slot (the TATs move on as if it had been granted) and comes back when it is due, so deferred
Celery tasks are granted in order and never starve each other.

Why hand-written: the ``limits`` library offers fixed, moving and sliding windows, but no GCRA,
no reservation of a future slot and no atomic check across two budgets in one operation; two
separate checks would charge the first budget for a call the second refuses.

Clock: the scripts read Redis ``TIME``, the fleet's one clock (hosts' clocks differ). Times are
kept as integer microseconds. Keys (``prefix`` defaults to ``spark-int:budget:``):

* ``{prefix}tat:{bucket}``: the bucket's TAT; expires a second after the TAT has passed, when
  the bucket is idle and missing state means the same thing.
* ``{prefix}slot:{token}``: a reservation, the granted slot time; expires ``horizon + 120 s``.
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

from constants import REDIS_BUDGET_PREFIX
from coordination.scripts import queue_script

__all__ = ["Bucket", "Grant", "RedisRateBudget"]

_US = 1_000_000
# A reservation due within this much of now is granted: the caller slept its wait and may wake
# a hair early, or spend a round trip before asking again.
_EARLY_GRACE_US = 2_000
# A reservation outlives its horizon by this much, so a slow caller still finds it.
_SLOT_GRACE_S = 120.0

# KEYS[1] slot:{token}; then per bucket i: KEYS[2i] tat, KEYS[2i+1] learned.
# ARGV[1] horizon (us), ARGV[2] early grace (us), ARGV[3] slot ttl (ms); then per bucket i:
# ARGV[2+2i] configured rate (per second), ARGV[3+2i] tau (us).
# Returns {allowed 0|1, wait (us), reserved 0|1}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = (#KEYS - 1) / 2
local slot = redis.call('GET', KEYS[1])
if slot then
  slot = tonumber(slot)
  if slot > now + tonumber(ARGV[2]) then return {0, slot - now, 1} end
  redis.call('DEL', KEYS[1])
  -- A reservation used within one period of its slot is granted. One used later (its caller
  -- could not run on time) is void: sending now would bunch with the slots after it, so the
  -- caller asks afresh and the stale slot is left as a gap.
  local period = 0
  for i = 1, n do
    local rate = tonumber(ARGV[2 + 2 * i])
    local lrate = tonumber(redis.call('HGET', KEYS[2 * i + 1], 'rate') or '')
    if lrate and lrate > 0 and lrate < rate then rate = lrate end
    local p = math.ceil(1000000 / rate)
    if period == 0 or p < period then period = p end
  end
  if now - slot <= period then return {1, 0, 0} end
end
local tats, periods = {}, {}
local s = now
for i = 1, n do
  local rate = tonumber(ARGV[2 + 2 * i])
  local tau = tonumber(ARGV[3 + 2 * i])
  local learned = redis.call('HMGET', KEYS[2 * i + 1], 'rate', 'pause_until')
  local lrate = tonumber(learned[1] or '')
  if lrate and lrate > 0 and lrate < rate then rate = lrate end
  local period = math.ceil(1000000 / rate)
  local tat = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local earliest = tat - tau
  local pause_until = tonumber(learned[2] or '')
  if pause_until and pause_until > earliest then earliest = pause_until end
  if earliest > s then s = earliest end
  tats[i] = tat
  periods[i] = period
end
local reserved = 0
if s > now then
  if s - now > tonumber(ARGV[1]) then return {0, s - now, 0} end
  reserved = 1
end
for i = 1, n do
  local tat = tats[i]
  if tat < s then tat = s end
  tat = tat + periods[i]
  local ttl = math.ceil((tat - now) / 1000) + 1000
  redis.call('SET', KEYS[2 * i], string.format('%d', tat), 'PX', string.format('%d', ttl))
end
if reserved == 1 then
  redis.call('SET', KEYS[1], string.format('%d', s), 'PX', ARGV[3])
  return {0, s - now, 1}
end
return {1, 0, 0}
"""

# KEYS[1] learned, KEYS[2] tat. ARGV[1] rate or '', ARGV[2] pause (us) or '', ARGV[3] ttl (ms).
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
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tat < target then
    local ttl = math.ceil((target - now) / 1000) + 1000
    redis.call('SET', KEYS[2], string.format('%d', target), 'PX', string.format('%d', ttl))
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
            0 means strictly evenly spaced.

    Raises:
        ValueError: The key is empty, the rate is not a finite number above 0, or the burst is
            negative or not finite.
    """

    key: str
    rate: float
    burst: float = 0.0

    def __post_init__(self) -> None:
        _check_name(self.key, "bucket key")
        _check_rate(self.rate, f"rate of bucket {self.key!r}")
        _check_seconds(self.burst, f"burst of bucket {self.key!r}")


@dataclass(frozen=True)
class Grant:
    """The budget's answer to one :meth:`RedisRateBudget.acquire`.

    Attributes:
        allowed: True: send now.
        wait: Seconds until the slot (0 when allowed).
        reserved: True: a future slot was reserved for this token; come back with the same
            token after ``wait``. False with ``allowed`` False: the slot lies beyond the
            horizon and nothing was reserved; wait a while and ask again.
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
        return f"{self._prefix}tat:{bucket_key}"

    def _learned_key(self, bucket_key: str) -> str:
        return f"{self._prefix}learned:{bucket_key}"

    def _slot_key(self, token: str) -> str:
        return f"{self._prefix}slot:{token}"

    def acquire(self, buckets: Sequence[Bucket], token: str, *, horizon: float = 30.0) -> Grant:
        """Ask for a slot in every bucket at once, atomically.

        If ``token`` holds a reservation, it is honoured: granted when due (and consumed),
        otherwise the remaining wait is returned and nothing new is reserved. A reservation
        used more than one period (the shortest among the buckets) after its slot is void: the
        slot is left as a gap and the call is treated as a new one, so a caller that could not
        run on time never sends in a bunch with the slots after its own. Otherwise the
        earliest slot fitting all buckets (and their learned rates and pauses) is computed:
        now means granted; within ``horizon`` means reserved for ``token``; further away
        changes nothing.

        Args:
            buckets: The budgets the call is charged to; each key at most once.
            token: Identifies the caller across its attempts (e.g. the task id), so a task that
                comes back finds its reservation.
            horizon: The farthest slot, in seconds from now, worth reserving.

        Returns:
            The grant: allowed now, reserved for later, or neither (too far).

        Raises:
            ValueError: No bucket, a bucket named twice, an empty token or a bad horizon.
        """
        return self.acquire_later(self._client, buckets, token, horizon=horizon)(None)

    def acquire_later(
        self, pipe: Any, buckets: Sequence[Bucket], token: str, *, horizon: float = 30.0
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
        _check_name(token, "token")
        _check_seconds(horizon, "horizon")
        keys: list[str] = [self._slot_key(token)]
        args: list[str] = [
            str(round(horizon * _US)),
            str(_EARLY_GRACE_US),
            str(math.ceil((horizon + _SLOT_GRACE_S) * 1000)),
        ]
        for bucket in buckets:
            keys += [self._tat_key(bucket.key), self._learned_key(bucket.key)]
            args += [repr(float(bucket.rate)), str(round(bucket.burst * _US))]
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
                Extends, never shortens, a pause in force, and pushes the bucket's TAT to at
                least the pause's end so the schedule resumes evenly after it.
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
            keys=[self._learned_key(bucket_key), self._tat_key(bucket_key)],
            args=[
                "" if rate is None else repr(float(rate)),
                "" if pause is None else str(math.ceil(pause * _US)),
                str(math.ceil(ttl * 1000)),
            ],
        )

    def forget(self, bucket_key: str) -> None:
        """Drop the learned rate and pause of a bucket (slots already handed out stay).

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
        if raw is None:
            return float(bucket.rate)
        try:
            learned = float(raw)
        except ValueError:
            return float(bucket.rate)
        if not (math.isfinite(learned) and learned > 0):
            return float(bucket.rate)
        return min(float(bucket.rate), learned)
