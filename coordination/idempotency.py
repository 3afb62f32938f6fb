"""Idempotency records of ``integrations.call`` (CONTRACT.md), kept in the coordination Redis.

One record per (connection, action, key), created atomically by the first call that claims it:

* a repeat with the same params while the first is in flight is told ``busy`` and waits;
* a repeat after it succeeded is handed the stored outcome without calling the provider;
* a repeat with different params is refused (``conflict``);
* a call whose outcome is unknown (request sent, no answer, provider takes no key) leaves a
  ``failed`` record, so no repeat sends it again until an operator replays the dead letter;
* a call that failed before anything could take effect releases its record, so a later repeat may
  try again.

Keys are stored hashed: a caller's key may carry meaning it would rather not have in Redis.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from spark_integrations.constants import REDIS_IDEMPOTENCY_PREFIX
from spark_integrations.coordination.scripts import queue_script

__all__ = ["Claim", "IdempotencyStore", "params_fingerprint"]

# KEYS[1] record; ARGV fingerprint, owner, ttl seconds.
# Returns {kind, payload}: kind is new | mine | done | failed | busy | conflict.
_CLAIM = """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'running', 'owner', ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  return {'new', ''}
end
local h = {}
for i = 1, #rec, 2 do h[rec[i]] = rec[i + 1] end
if h['fp'] ~= ARGV[1] then return {'conflict', ''} end
if h['state'] == 'done' then return {'done', h['outcome'] or ''} end
if h['state'] == 'failed' then return {'failed', h['outcome'] or ''} end
if h['owner'] == ARGV[2] then return {'mine', ''} end
return {'busy', h['owner'] or ''}
"""

# KEYS[1] record; ARGV owner, state, outcome. Only the owner settles its record.
_SETTLE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'outcome', ARGV[3])
return 1
"""

# KEYS[1] record; ARGV owner. Only the owner releases its record.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


def params_fingerprint(params: Any) -> str:
    """A stable digest of a call's params (key order does not matter)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """What claiming an idempotency key found."""

    kind: str  # new | mine | done | failed | busy | conflict
    outcome: Any = None  # the stored result (done) or error message (failed)


class IdempotencyStore:
    """Atomic idempotency records in Redis, one script call per operation."""

    def __init__(self, client: redis.Redis, ttl: int = 86_400) -> None:
        self.client = client
        self.ttl = ttl
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)
        self._release = client.register_script(_RELEASE)

    @staticmethod
    def record_key(connection_id: str, action: str, key: str) -> str:
        """The Redis key of one record; the caller's key is hashed."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        return f"{REDIS_IDEMPOTENCY_PREFIX}{connection_id}:{action}:{digest}"

    def claim(self, record: str, fingerprint: str, owner: str) -> Claim:
        """Create the record for ``owner``, or report what holds it."""
        kind, payload = self._claim(keys=[record], args=[fingerprint, owner, self.ttl])
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if isinstance(payload, bytes):
            payload = payload.decode()
        if kind == "done":
            return Claim(kind, json.loads(payload))
        return Claim(kind, payload or None)

    def succeed(self, record: str, owner: str, result: Any, *, pipe: Any = None) -> None:
        """Store a successful outcome for repeats to find (queued on ``pipe`` when given)."""
        args = [owner, "done", json.dumps(result)]
        if pipe is None:
            self._settle(keys=[record], args=args)
        else:
            queue_script(pipe, self._settle, [record], args)

    @property
    def scripts(self) -> tuple[Script, ...]:
        """The Lua scripts, for :func:`coordination.load_scripts`."""
        return (self._claim, self._settle, self._release)

    def fail(self, record: str, owner: str, error: str) -> None:
        """Store a failure whose effect is unknown: repeats fail too instead of sending again."""
        self._settle(keys=[record], args=[owner, "failed", error])

    def release(self, record: str, owner: str) -> None:
        """Forget a claim whose call had no effect, so a later repeat may try again."""
        self._release(keys=[record], args=[owner])

    def forget(self, record: str) -> None:
        """Remove a record whoever holds it (an operator replaying a dead letter)."""
        self.client.delete(record)
