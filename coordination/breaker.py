"""A fleet-wide circuit breaker: one state per key in Redis, every transition one Lua call.

A call to a provider is usually guarded by two keys, the connector's (``"sandbox"``) and its
connection's (``"sandbox:conn-id"``), each with its own state; the call is admitted only if
every key admits it. A key is:

* closed: calls go through; ``fail_max`` consecutive failures open it;
* open: calls are deferred until ``reset_timeout`` has passed;
* half-open (open, its time passed): exactly one caller in the whole fleet holds the probe; its
  success closes the key, its failure reopens it (the timeout doubling on each reopen, capped
  at ten times ``reset_timeout``). A probe whose holder died expires after ``probe_timeout``,
  and the next caller probes.

Why hand-written: ``pybreaker``'s Redis storage does its transitions as read-modify-write
without atomicity, so two processes can both open, close or count over each other, and its
half-open state lets one trial call through per process, not one per fleet: a fleet of forty
processes sends forty probes to a provider that is down.

Clock: the scripts read Redis ``TIME``, the fleet's one clock. Times are integer microseconds.
Keys (``prefix`` defaults to ``spark-int:breaker:``):

* ``{prefix}state:{key}``: a hash: ``failures`` (consecutive), and while open ``state`` =
  ``open``, ``open_until`` and ``reopens``. A closed key with no failures has no hash at all;
  otherwise it expires a day after its last change (plus the time it stays open).
* ``{prefix}probe:{key}``: the token of the probe holder; expires after ``probe_timeout``.

All keys of one call must live on one Redis node (no Redis Cluster hash-slot routing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from spark_integrations import metrics
from spark_integrations.constants import (
    BREAKER_PROBE_KEY,
    BREAKER_STATE_KEY,
    REDIS_BREAKER_PREFIX,
)
from spark_integrations.coordination.scripts import queue_script

__all__ = ["Admission", "BreakerPolicy", "RedisCircuitBreaker"]

_US = 1_000_000
# How long a key's state outlives its last change: idle state disappears.
STATE_TTL_S = 86_400.0
# A caller turned away by another's probe comes back after at most this long.
_PROBE_WAIT_US = 1_000_000
# The reopen timeout doubles on each consecutive reopen up to this multiple of reset_timeout.
_MAX_BACKOFF = 10

_STATES = ("closed", "half_open", "open")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# Keep a state hash a day after this change, and at least until it may close again.
_EXPIRE = """
local function keep(skey, now, ttl_ms)
  local open_until = tonumber(redis.call('HGET', skey, 'open_until') or '0')
  local ms = ttl_ms
  if open_until > now then ms = ms + math.ceil((open_until - now) / 1000) end
  redis.call('PEXPIRE', skey, string.format('%d', ms))
end
"""

# Per key i: KEYS[2i-1] state, KEYS[2i] probe. ARGV[1] token, ARGV[2] probe timeout (ms),
# ARGV[3] longest wait behind another's probe (us).
# Returns {allowed 0|1, wait (us), probe 0|1, worst state 0 closed | 1 half-open | 2 open}.
_ADMIT = (
    _NOW
    + """
local token, probe_wait = ARGV[1], tonumber(ARGV[3])
local worst, wait, blocked, holds = 0, 0, false, false
local claim = {}
for i = 1, #KEYS / 2 do
  local skey, pkey = KEYS[2 * i - 1], KEYS[2 * i]
  local st = redis.call('HMGET', skey, 'state', 'open_until')
  if st[1] == 'open' then
    local open_until = tonumber(st[2] or '0')
    if now < open_until then
      blocked = true
      worst = 2
      if open_until - now > wait then wait = open_until - now end
    else
      if worst < 1 then worst = 1 end
      local holder = redis.call('GET', pkey)
      if holder == token then
        holds = true
      elseif holder then
        blocked = true
        local w = redis.call('PTTL', pkey) * 1000
        if w <= 0 or w > probe_wait then w = probe_wait end
        if w < 1000 then w = 1000 end
        if w > wait then wait = w end
      else
        claim[#claim + 1] = pkey
      end
    end
  end
end
if blocked then return {0, wait, 0, worst} end
for _, pkey in ipairs(claim) do
  redis.call('SET', pkey, token, 'NX', 'PX', ARGV[2])
end
if holds or #claim > 0 then return {1, 0, 1, worst} end
return {1, 0, 0, worst}
"""
)

# Per key i: KEYS[2i-1] state, KEYS[2i] probe. ARGV[1] token, ARGV[2] state ttl (ms).
# Returns the positions (1-based) of the keys it closed.
_SUCCESS = (
    _NOW
    + _EXPIRE
    + """
local closed = {}
for i = 1, #KEYS / 2 do
  local skey, pkey = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('HGET', skey, 'state') == 'open' then
    if redis.call('GET', pkey) == ARGV[1] then
      redis.call('DEL', skey, pkey)
      closed[#closed + 1] = i
    else
      redis.call('HSET', skey, 'failures', '0')
      keep(skey, now, tonumber(ARGV[2]))
    end
  else
    redis.call('DEL', skey)
  end
end
return closed
"""
)

# Per key i: KEYS[2i-1] state, KEYS[2i] probe. ARGV[1] token, ARGV[2] state ttl (ms),
# ARGV[3] fail_max, ARGV[4] reset timeout (us), ARGV[5] longest reopen timeout (us).
# Returns the positions (1-based) of the keys it opened or reopened.
_FAILURE = (
    _NOW
    + _EXPIRE
    + """
local reset, longest = tonumber(ARGV[4]), tonumber(ARGV[5])
local opened = {}
for i = 1, #KEYS / 2 do
  local skey, pkey = KEYS[2 * i - 1], KEYS[2 * i]
  local failures = redis.call('HINCRBY', skey, 'failures', 1)
  local st = redis.call('HMGET', skey, 'state', 'reopens')
  if st[1] == 'open' then
    if redis.call('GET', pkey) == ARGV[1] then
      local reopens = tonumber(st[2] or '0') + 1
      local timeout = reset * math.pow(2, math.min(reopens, 60))
      if timeout > longest then timeout = longest end
      redis.call('HSET', skey, 'open_until', string.format('%d', now + timeout),
        'reopens', string.format('%d', reopens))
      redis.call('DEL', pkey)
      opened[#opened + 1] = i
    end
  elseif failures >= tonumber(ARGV[3]) then
    redis.call('HSET', skey, 'state', 'open', 'open_until', string.format('%d', now + reset),
      'reopens', '0')
    redis.call('DEL', pkey)
    opened[#opened + 1] = i
  end
  keep(skey, now, tonumber(ARGV[2]))
end
return opened
"""
)

# Per key i: KEYS[i] probe. ARGV[1] token. Only the holder gives its probe up.
_RELEASE = """
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
"""


@dataclass(frozen=True)
class BreakerPolicy:
    """When a key opens and how it recovers.

    Attributes:
        fail_max: Consecutive failures that open a closed key (1 or more).
        reset_timeout: Seconds a key stays open before a probe is allowed (above 0).
        probe_timeout: Seconds one probe holds the half-open slot; a holder that died without
            reporting loses it then, so the fleet is never stuck half-open (above 0).

    Raises:
        ValueError: A value out of range.
    """

    fail_max: int = 5
    reset_timeout: float = 30.0
    probe_timeout: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.fail_max, bool) or not isinstance(self.fail_max, int):
            raise ValueError("fail_max must be an integer")
        if self.fail_max < 1:
            raise ValueError("fail_max must be 1 or more")
        for name in ("reset_timeout", "probe_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number of seconds above 0")


@dataclass(frozen=True)
class Admission:
    """The breaker's answer to one :meth:`RedisCircuitBreaker.admit`.

    Attributes:
        allowed: True: make the call, then report its outcome.
        wait: Seconds to defer when not allowed (0 when allowed).
        probe: True: this caller holds the fleet's single half-open probe; its report decides.
        state: ``"closed"``, ``"open"`` or ``"half_open"``: the worst over the keys.
    """

    allowed: bool
    wait: float
    probe: bool
    state: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _count_transitions(names: list[str], positions: Any, state: str) -> None:
    """Count the keys a script reply says entered ``state`` (1-based positions in ``names``)."""
    if not isinstance(positions, list):
        return  # an error in a pipeline's replies, or a script of an older fleet
    for position in positions:
        metrics.count("breaker_transitions", breaker=names[int(position) - 1], state=state)


class RedisCircuitBreaker:
    """Circuit breakers shared by every process that uses the same Redis.

    Build one per Redis client and share it: the Lua scripts are registered with the client
    once, here, and run by SHA (reloaded automatically after a Redis restart).

    Args:
        client: The coordination Redis (``redis.Redis``; decoded or raw responses both work).
        policy: Thresholds and timeouts, the same for every key of this breaker.
        prefix: Prepended to every key this breaker writes.
    """

    def __init__(
        self,
        client: redis.Redis,
        policy: BreakerPolicy = BreakerPolicy(),  # frozen, so safe to share
        prefix: str = REDIS_BREAKER_PREFIX,
    ) -> None:
        self._client = client
        self._policy = policy
        self._prefix = prefix
        self._admit = client.register_script(_ADMIT)
        self._success = client.register_script(_SUCCESS)
        self._failure = client.register_script(_FAILURE)
        self._release = client.register_script(_RELEASE)

    @property
    def scripts(self) -> tuple[Script, ...]:
        """The Lua scripts, for :func:`coordination.scripts.load_scripts`."""
        return (self._admit, self._success, self._failure, self._release)

    @property
    def policy(self) -> BreakerPolicy:
        """The policy every key of this breaker follows."""
        return self._policy

    def _state_key(self, key: str) -> str:
        return self._prefix + BREAKER_STATE_KEY.format(key=key)

    def _probe_key(self, key: str) -> str:
        return self._prefix + BREAKER_PROBE_KEY.format(key=key)

    def _keys(self, keys: Sequence[str], token: str) -> list[str]:
        if isinstance(keys, str):
            raise ValueError("keys must be a sequence of key names, not one string")
        if not keys:
            raise ValueError("a breaker operation needs at least one key")
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        redis_keys: list[str] = []
        for key in dict.fromkeys(keys):  # each key once, in order
            if not isinstance(key, str) or not key:
                raise ValueError("breaker keys must be non-empty strings")
            redis_keys += [self._state_key(key), self._probe_key(key)]
        return redis_keys

    def admit(self, keys: Sequence[str], token: str) -> Admission:
        """Ask every key whether a call may go now; claim the half-open probes if so.

        Atomic over all keys: a probe is claimed only when every key admits the call, so a
        caller turned away by one key never holds another key's probe.

        Args:
            keys: The keys guarding the call, e.g. ``["sandbox", "sandbox:conn-id"]``.
            token: Identifies the caller (e.g. the task id); it must report with the same one.
                A caller that already holds the probe is admitted again as its holder.

        Returns:
            The admission; when not allowed, ``wait`` says how long to defer.
        """
        return self.admit_later(self._client, keys, token)(None)

    def admit_later(self, pipe: Any, keys: Sequence[str], token: str) -> Callable[[Any], Admission]:
        """:meth:`admit` queued on a pipeline, to share one round trip with other commands.

        Returns a function that turns this command's reply (from ``pipe.execute()``) into the
        admission. Given the client itself instead of a pipeline, the script runs at once and
        the function ignores its argument.
        """
        redis_keys = self._keys(keys, token)
        probe_ms = math.ceil(self._policy.probe_timeout * 1000)
        args = [token, str(probe_ms), str(_PROBE_WAIT_US)]
        ran: Any = None
        if pipe is self._client:
            ran = self._admit(keys=redis_keys, args=args)
        else:
            queue_script(pipe, self._admit, redis_keys, args)

        def parse(reply: Any) -> Admission:
            result = ran if pipe is self._client else reply
            allowed, wait_us, probe, worst = (int(x) for x in result)
            return Admission(
                allowed=bool(allowed),
                wait=max(wait_us, 0) / _US,
                probe=bool(probe),
                state=_STATES[worst],
            )

        return parse

    def record_success(self, keys: Sequence[str], token: str) -> None:
        """Report a call that went well.

        Resets each key's failure counter; closes a half-open key only if ``token`` holds its
        probe (another caller's success, e.g. a slow call admitted before the key opened, does
        not decide for the fleet).

        Args:
            keys: The keys the call was admitted under.
            token: The token the call was admitted with.
        """
        self.record_success_later(self._client, keys, token)

    def record_success_later(
        self, pipe: Any, keys: Sequence[str], token: str
    ) -> Callable[[Any], None]:
        """:meth:`record_success` queued on a pipeline (or run at once, given the client).

        Returns a function to call with this command's reply (from ``pipe.execute()``): it
        counts the keys the success closed (:mod:`metrics`). Given the client itself, they are
        counted at once and the function does nothing.
        """
        redis_keys = self._keys(keys, token)
        args = [token, str(math.ceil(STATE_TTL_S * 1000))]
        names = list(dict.fromkeys(keys))
        if pipe is self._client:
            _count_transitions(names, self._success(keys=redis_keys, args=args), "closed")
            return lambda reply: None
        queue_script(pipe, self._success, redis_keys, args)
        return lambda reply: _count_transitions(names, reply, "closed")

    def record_failure(self, keys: Sequence[str], token: str) -> None:
        """Report a call that failed in a way that counts against the provider.

        Counts a consecutive failure on each key, opening a closed key at ``fail_max``. If
        ``token`` holds a key's probe, the key reopens for ``reset_timeout`` doubled on each
        consecutive reopen (at most ten times ``reset_timeout``); other failures while open
        are counted but change nothing.

        Args:
            keys: The keys the call was admitted under.
            token: The token the call was admitted with.
        """
        redis_keys = self._keys(keys, token)
        policy = self._policy
        opened = self._failure(
            keys=redis_keys,
            args=[
                token,
                str(math.ceil(STATE_TTL_S * 1000)),
                str(policy.fail_max),
                str(round(policy.reset_timeout * _US)),
                str(round(policy.reset_timeout * _MAX_BACKOFF * _US)),
            ],
        )
        _count_transitions(list(dict.fromkeys(keys)), opened, "open")

    def release(self, keys: Sequence[str], token: str) -> None:
        """Give up the probes ``token`` holds without a verdict, so another caller may probe.

        For a call that ended without saying anything about the provider (cancelled, or
        failed before sending). Probes held by others are left alone.

        Args:
            keys: The keys the call was admitted under.
            token: The token the call was admitted with.
        """
        redis_keys = self._keys(keys, token)
        self._release(keys=redis_keys[1::2], args=[token])

    def state(self, key: str) -> dict[str, object]:
        """One key's state, for operators and tests.

        Args:
            key: The key, as passed to :meth:`admit`.

        Returns:
            ``state`` (``"closed"``, ``"open"`` or ``"half_open"``), ``failures`` (consecutive),
            ``open_until`` (Unix time by Redis's clock, or None when closed), ``reopens``
            (consecutive reopens since it last closed) and ``probe`` (the holder's token, or
            None).
        """
        self._keys([key], "state")
        pipe = self._client.pipeline(transaction=True)
        pipe.time()
        pipe.hgetall(self._state_key(key))
        pipe.get(self._probe_key(key))
        (seconds, micros), raw, holder = pipe.execute()
        now_us = int(seconds) * _US + int(micros)
        fields = {_text(k): _text(v) for k, v in raw.items()}
        failures = int(fields.get("failures", "0"))
        reopens = int(fields.get("reopens", "0"))
        if fields.get("state") != "open":
            return {
                "state": "closed",
                "failures": failures,
                "open_until": None,
                "reopens": reopens,
                "probe": None,
            }
        open_until_us = int(fields.get("open_until", "0"))
        return {
            "state": "open" if now_us < open_until_us else "half_open",
            "failures": failures,
            "open_until": open_until_us / _US,
            "reopens": reopens,
            "probe": None if holder is None else _text(holder),
        }
