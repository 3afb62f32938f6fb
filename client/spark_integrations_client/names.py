"""The contract's names (CONTRACT.md, "Celery task contract"), kept here and nowhere else.

The client imports nothing of the fleet: these strings are the interface both sides agree on,
so they are written out rather than read from the fleet's own constants.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_KEY_LENGTH",
    "QUEUE_BACKFILLS",
    "QUEUE_CALLS",
    "QUEUE_SYNCS",
    "TASK_CALL",
    "TASK_SYNC",
]

TASK_CALL: Final = "integrations.call"
TASK_SYNC: Final = "integrations.sync"

QUEUE_CALLS: Final = "integrations.calls"
QUEUE_SYNCS: Final = "integrations.syncs"
#: Full refreshes of a sync go to their own queue, so a long backfill never holds up the
#: incremental runs behind it.
QUEUE_BACKFILLS: Final = "integrations.backfills"

#: The longest id (a connection's, an action's, a sync's) the fleet accepts.
MAX_ID_LENGTH: Final = 200
#: The longest idempotency key the fleet accepts (it is forwarded in an HTTP header).
MAX_KEY_LENGTH: Final = 255
