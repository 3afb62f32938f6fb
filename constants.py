"""Every name the fleet shares with the outside world or between its parts.

Queue names, task names, Redis key prefixes and defaults live here and nowhere else, so a
rename is one change and a grep finds every use.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALL_QUEUES",
    "BREAKER_PROBE_KEY",
    "BREAKER_STATE_KEY",
    "BROKER_FETCH_MODES",
    "BUDGET_LEARNED_KEY",
    "BUDGET_PLAN_KEY",
    "BUDGET_TAT_KEY",
    "CONNECTION_CACHE_SECONDS",
    "CONNECTION_STATUSES",
    "CONNECTION_URL_KEYS",
    "CONNECTOR_ENTRY_POINT_GROUP",
    "DEFAULT_IDEMPOTENCY_TTL",
    "DEFAULT_MAX_DELIVERIES",
    "DEFAULT_PUBLIC_URL",
    "DEFAULT_RECLAIM_AFTER",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_SYNC_LEASE",
    "DEFAULT_TASK_TIME_LIMIT",
    "DEFAULT_VISIBILITY_TIMEOUT",
    "DESTINATION_ENTRY_POINT_GROUP",
    "ENV_PREFIX",
    "EVENT_CONNECTION_NEEDS_REAUTH",
    "EVENT_DEAD_LETTER_WRITTEN",
    "EVENT_PING",
    "EVENT_SYNC_FAILED",
    "EVENT_SYNC_SUCCEEDED",
    "EVENT_TYPES",
    "EVENT_WEBHOOK_RECEIVED",
    "FORWARDED_KEY_PREFIX",
    "QUEUE_BACKFILLS",
    "QUEUE_CALLS",
    "QUEUE_MAINTENANCE",
    "QUEUE_SYNCS",
    "QUEUE_WEBHOOKS",
    "RATE_BUDGET_HORIZON",
    "REDIS_BREAKER_PREFIX",
    "REDIS_BUDGET_DEFERRALS",
    "REDIS_BUDGET_PREFIX",
    "REDIS_CALL_JOURNAL_PREFIX",
    "REDIS_DELIVERY_PREFIX",
    "REDIS_FETCH_PREFIX",
    "REDIS_IDEMPOTENCY_PREFIX",
    "REDIS_KEY_PREFIX",
    "REDIS_METRICS_PREFIX",
    "REDIS_STATS_PREFIX",
    "REDIS_TOKEN_LOCK_PREFIX",
    "REFRESH_TOKENS_EVERY",
    "SCHEDULE_CRON",
    "SCHEDULE_EVERY",
    "TASK_CALL",
    "TASK_DELIVER_EVENT",
    "TASK_PING",
    "TASK_PROCESS_WEBHOOK",
    "TASK_PURGE_HISTORY",
    "TASK_REFRESH_TOKENS",
    "TASK_RELEASE_PARKED",
    "TASK_ROUTES",
    "TASK_SWEEP_DELIVERIES",
    "TASK_SWEEP_WEBHOOKS",
    "TASK_SYNC",
    "USER_AGENT",
]

ENV_PREFIX: Final = "SPARK_INTEGRATIONS_"

# Queues (CONTRACT.md). Plain queues: no broker-specific arguments, so any client may declare them.
QUEUE_CALLS: Final = "integrations.calls"
QUEUE_SYNCS: Final = "integrations.syncs"
QUEUE_BACKFILLS: Final = "integrations.backfills"
QUEUE_WEBHOOKS: Final = "integrations.webhooks"
QUEUE_MAINTENANCE: Final = "integrations.maintenance"
ALL_QUEUES: Final = (QUEUE_CALLS, QUEUE_SYNCS, QUEUE_BACKFILLS, QUEUE_WEBHOOKS, QUEUE_MAINTENANCE)

# Task names (CONTRACT.md), plus the fleet's own health probe.
TASK_CALL: Final = "integrations.call"
TASK_SYNC: Final = "integrations.sync"
TASK_PROCESS_WEBHOOK: Final = "integrations.process_webhook"
TASK_REFRESH_TOKENS: Final = "integrations.refresh_tokens"
TASK_PING: Final = "integrations.ping"
# Sends parked calls (waits longer than a safe countdown) again once due; run by beat.
TASK_RELEASE_PARKED: Final = "integrations.release_parked"
# Deletes history past the retention period (runs, dead letters, webhook events, flows); daily.
TASK_PURGE_HISTORY: Final = "integrations.purge_history"
# Sends a task for every stored webhook event no task has taken (the broker was down when it
# arrived, or the task was lost); run by beat.
TASK_SWEEP_WEBHOOKS: Final = "integrations.sweep_webhooks"
# Posts one of the fleet's events to one subscriber (outgoing webhooks), and the beat job that
# sends the deliveries due (first tries and retries, over hours).
TASK_DELIVER_EVENT: Final = "integrations.deliver_event"
TASK_SWEEP_DELIVERIES: Final = "integrations.sweep_deliveries"

# The fleet's events, as subscribers receive them (outgoing webhooks): a sync run ended, a
# connection needs a person, a dead letter was written, an incoming webhook was taken.
EVENT_SYNC_SUCCEEDED: Final = "sync.succeeded"
EVENT_SYNC_FAILED: Final = "sync.failed"
EVENT_CONNECTION_NEEDS_REAUTH: Final = "connection.needs_reauth"
EVENT_DEAD_LETTER_WRITTEN: Final = "dead_letter.written"
EVENT_WEBHOOK_RECEIVED: Final = "webhook.received"
EVENT_TYPES: Final = (
    EVENT_SYNC_SUCCEEDED,
    EVENT_SYNC_FAILED,
    EVENT_CONNECTION_NEEDS_REAUTH,
    EVENT_DEAD_LETTER_WRITTEN,
    EVENT_WEBHOOK_RECEIVED,
)
# Sent to one subscriber on demand (``subscribers test``), never subscribed to.
EVENT_PING: Final = "ping"

TASK_ROUTES: Final[dict[str, dict[str, str]]] = {
    TASK_CALL: {"queue": QUEUE_CALLS},
    TASK_SYNC: {"queue": QUEUE_SYNCS},
    TASK_PROCESS_WEBHOOK: {"queue": QUEUE_WEBHOOKS},
    TASK_REFRESH_TOKENS: {"queue": QUEUE_MAINTENANCE},
    TASK_PING: {"queue": QUEUE_MAINTENANCE},
    TASK_RELEASE_PARKED: {"queue": QUEUE_MAINTENANCE},
    TASK_PURGE_HISTORY: {"queue": QUEUE_MAINTENANCE},
    TASK_SWEEP_WEBHOOKS: {"queue": QUEUE_MAINTENANCE},
    TASK_DELIVER_EVENT: {"queue": QUEUE_WEBHOOKS},
    TASK_SWEEP_DELIVERIES: {"queue": QUEUE_MAINTENANCE},
}

# Entry-point groups plugins register in: connectors (CONTRACT.md) and sync destinations.
CONNECTOR_ENTRY_POINT_GROUP: Final = "spark_integrations.connectors"
DESTINATION_ENTRY_POINT_GROUP: Final = "spark_integrations.destinations"

# The User-Agent of every request the fleet sends to a provider.
USER_AGENT: Final = "automagik-spark-integrations"
# A call without an idempotency key is forwarded to a provider that honours one with this
# prefix and its task id, so the fleet's own re-sends of that call are deduplicated too.
FORWARDED_KEY_PREFIX: Final = "spark-int-"

# A sync's schedule is stored as "every:SECONDS" or "cron:EXPR" (five fields, UTC).
SCHEDULE_EVERY: Final = "every"
SCHEDULE_CRON: Final = "cron"

# Connection statuses (CONTRACT.md).
CONNECTION_STATUSES: Final = ("active", "needs_auth", "needs_reauth", "disabled")
# Config keys naming where a connection's requests (and its credentials) go: changing one needs
# the connection's secrets again and drops its OAuth tokens.
CONNECTION_URL_KEYS: Final = ("base_url", "authorize_url", "token_url")

# Every Redis key the fleet writes starts with this, so an operator can tell them apart
# from the broker's own keys and scan them in one pattern.
REDIS_KEY_PREFIX: Final = "spark-int:"
# Fleet-wide rate budgets (GCRA state and reservations) and circuit breakers.
REDIS_BUDGET_PREFIX: Final = REDIS_KEY_PREFIX + "budget:"
REDIS_BREAKER_PREFIX: Final = REDIS_KEY_PREFIX + "breaker:"
# Under a budget's prefix, per bucket: its emission and planning times, what the provider taught.
BUDGET_TAT_KEY: Final = "tat:{bucket}"
BUDGET_PLAN_KEY: Final = "plan:{bucket}"
BUDGET_LEARNED_KEY: Final = "learned:{bucket}"
# Under a breaker's prefix, per key: its state hash and the holder of its half-open probe.
BREAKER_STATE_KEY: Final = "state:{key}"
BREAKER_PROBE_KEY: Final = "probe:{key}"
# Idempotency records of integrations.call, and the per-call journal (attempts, sends in flight).
REDIS_IDEMPOTENCY_PREFIX: Final = REDIS_KEY_PREFIX + "idem:"
REDIS_CALL_JOURNAL_PREFIX: Final = REDIS_KEY_PREFIX + "call:"
# Fleet-wide counters for operators and the demo (e.g. calls deferred by the rate budget).
REDIS_STATS_PREFIX: Final = REDIS_KEY_PREFIX + "stats:"
#: Counts requests deferred by the fleet's rate budget (a wait instead of a provider's 429).
REDIS_BUDGET_DEFERRALS: Final = REDIS_STATS_PREFIX + "budget_deferrals"
# Deliveries of one attempt of one task (poison messages): {prefix}{task_id}:{retries}.
REDIS_DELIVERY_PREFIX: Final = REDIS_KEY_PREFIX + "deliveries:"
# One lock per connection: the only process allowed to refresh its OAuth token.
REDIS_TOKEN_LOCK_PREFIX: Final = REDIS_KEY_PREFIX + "lock:token:"
# The fleet's metrics: every process adds to counters here, the gateway's /metrics reads them.
REDIS_METRICS_PREFIX: Final = REDIS_KEY_PREFIX + "metrics:"

DEFAULT_PUBLIC_URL: Final = "http://127.0.0.1:8130"

# The broker's visibility timeout: a message taken by a worker that dies unacked is handed out
# again after this many seconds (Redis transport). It bounds recovery time after a lost worker,
# so it is short; every task's hard time limit and every retry countdown stays below it.
DEFAULT_VISIBILITY_TIMEOUT: Final = 900
# Reliable fetch (Redis broker): a worker's messages are handed out again once the worker has
# gone this many seconds without proving itself alive (it does every quarter of it).
DEFAULT_RECLAIM_AFTER: Final = 60
# How a worker takes messages from a Redis broker: "reliable" (an atomic move into the worker's
# own held hash) or "kombu" (kombu's BRPOP, which loses a message taken by a main process killed
# before recording it).
BROKER_FETCH_MODES: Final = ("reliable", "kombu")
# Keys of reliable fetch on the broker's Redis: held:{consumer}, alive:{consumer}, consumers.
REDIS_FETCH_PREFIX: Final = REDIS_KEY_PREFIX + "fetch:"
# Hard time limit of any one task. Long work (syncs, backfills) is a chain of short tasks.
DEFAULT_TASK_TIME_LIMIT: Final = 300
# Deliveries of one message (one attempt of one task) before it is taken for a poison message
# that kills its worker every time, and dead-lettered instead of being handed out again.
DEFAULT_MAX_DELIVERIES: Final = 3
# How long an idempotency record of integrations.call lives (CONTRACT.md: 24 hours).
DEFAULT_IDEMPOTENCY_TTL: Final = 86_400
# How far ahead the rate budget plans slots for calls that must wait: a call whose slot would
# lie further away is not given one, and asks again later.
RATE_BUDGET_HORIZON: Final = 30.0
# Seconds a connection's config and secrets are cached in a worker process between store reads.
CONNECTION_CACHE_SECONDS: Final = 2.0
# Seconds between runs of integrations.refresh_tokens from beat.
REFRESH_TOKENS_EVERY: Final = 30.0
# Days run history, dead letters, webhook events and finished connect flows are kept.
DEFAULT_RETENTION_DAYS: Final = 30
# Seconds a sync run's holder may go without proving itself alive (it does at every page and
# every few seconds of waiting) before its run is taken for abandoned and may be taken over.
DEFAULT_SYNC_LEASE: Final = 60
