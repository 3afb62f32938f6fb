"""The Lua scripts of reliable fetch: a take and a reclaim, each one atomic step in Redis.

Keys a consumer owns (``P`` is :data:`constants.REDIS_FETCH_PREFIX`):

* ``P held:{consumer}``: a hash, delivery tag -> ``[source list, message]`` (JSON), of every
  message the consumer has taken and not yet acknowledged;
* ``P alive:{consumer}``: present while the consumer proves itself alive (it expires after the
  reclaim time unless renewed);
* ``P consumers``: the set of consumer ids that may hold messages.
"""

from __future__ import annotations

__all__ = ["RECLAIM", "TAKE"]

# KEYS: held hash, alive key, consumers set, then the queue lists in the order to try them.
# ARGV: consumer id, alive time in ms, how many of the lists are consumed with acknowledgements.
# The first message found is popped; when it needs an acknowledgement it is written to the held
# hash in the same step, so no instant exists at which it is in neither place. A message whose
# delivery tag cannot be read (not kombu's shape) is returned unrecorded, as kombu drops it.
# The element is stored as it was received, spliced into the JSON array without re-encoding it
# (cjson would round numbers to 14 digits). The consumer is made alive and a member of the set
# when it records (its keep-alive thread does so too; an empty take writes nothing). The fourth
# element of the answer says whether any of the lists still holds a message, so a worker stops
# taking without one more empty take.
TAKE = """
local acked = tonumber(ARGV[3])
for i = 4, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local tag = false
    if i - 3 <= acked then
      local found = nil
      local ok, message = pcall(cjson.decode, item)
      if ok and type(message) == 'table' and type(message['properties']) == 'table' then
        found = message['properties']['delivery_tag']
      elseif not ok then
        -- JSON that Python reads and cjson does not (a lone surrogate escape): kombu's tags are
        -- uuids, and the body is base64, so the tag is the one such field of the text.
        found = string.match(item, '"delivery_tag":%s*"([%w%-]+)"')
      end
      if type(found) == 'string' and found ~= '' then
        tag = found
        redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
        redis.call('SADD', KEYS[3], ARGV[1])
        redis.call('HSET', KEYS[1], tag, '[' .. cjson.encode(KEYS[i]) .. ',' .. item .. ']')
      end
    end
    local more = 0
    for j = i, #KEYS do
      if redis.call('LLEN', KEYS[j]) > 0 then
        more = 1
        break
      end
    end
    return {KEYS[i], item, tag, more}
  end
end
return false
"""

# KEYS: consumers set, the reclaimer's own held hash.
# ARGV: the reclaimer's id, the key prefix.
# Every consumer in the set whose alive key has expired gives its held messages to the reclaimer
# (which then puts each back on its list) and leaves the set: one step, so two reclaimers never
# both take a dead consumer's messages. The reclaimer joins the set first: it holds the moved
# messages until it has put them back, and must itself be reclaimable if it dies meanwhile (it
# may have been counted dead and left the set before it reclaims). Keys are named from the set's
# members, so this script needs a Redis that is not a cluster (as kombu's transport does).
RECLAIM = """
redis.call('SADD', KEYS[1], ARGV[1])
local moved = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. 'alive:' .. id) == 0 then
    local held = ARGV[2] .. 'held:' .. id
    local entries = redis.call('HGETALL', held)
    for j = 1, #entries, 2 do
      redis.call('HSET', KEYS[2], entries[j], entries[j + 1])
      moved[#moved + 1] = entries[j]
    end
    redis.call('DEL', held)
    redis.call('SREM', KEYS[1], id)
  end
end
return moved
"""
