"""How a failed task's error becomes one of the client's exceptions.

Celery keeps a failed task's error as its type name and message alone (JSON results): in the
client's process, where the fleet's own exception classes do not exist, Celery rebuilds it as a
stand-in class of the same name. So a failure is read by that name and its message, both of
which the fleet writes for people (and never with a secret in them).

Which failures mean an unknown id is read from the fleet's sentence: the contract says a
failed call fails "with a message naming the cause", and these are the fleet's causes for an id
it does not know.
"""

from __future__ import annotations

from typing import Final

from spark_integrations_client.errors import (
    CallFailedError,
    SyncFailedError,
    UnknownConnectionError,
    UnknownSyncError,
)

__all__ = [
    "UNKNOWN_CONNECTION_PREFIX",
    "UNKNOWN_SYNC_PREFIX",
    "call_failure",
    "failure_reason",
    "sync_failure",
]

#: How the fleet's failure of a call to a connection it does not know begins.
UNKNOWN_CONNECTION_PREFIX: Final = "no connection has the id "
#: How the fleet's failure of a trigger of a sync it does not know begins.
UNKNOWN_SYNC_PREFIX: Final = "no sync "


def failure_reason(error: BaseException) -> str:
    """The fleet's sentence of a failed task: its message (the first argument when it is text)."""
    args = error.args
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return str(error) or type(error).__name__


def call_failure(
    error: BaseException, *, task_id: str, connection_id: str, action: str
) -> CallFailedError:
    """The exception for a failed ``integrations.call``."""
    reason = failure_reason(error)
    cls = (
        UnknownConnectionError if reason.startswith(UNKNOWN_CONNECTION_PREFIX) else CallFailedError
    )
    return cls(
        reason,
        task_id=task_id,
        error_type=type(error).__name__,
        connection_id=connection_id,
        action=action,
    )


def sync_failure(error: BaseException, *, task_id: str, sync_id: str) -> SyncFailedError:
    """The exception for a failed ``integrations.sync``."""
    reason = failure_reason(error)
    cls = UnknownSyncError if reason.startswith(UNKNOWN_SYNC_PREFIX) else SyncFailedError
    return cls(reason, task_id=task_id, error_type=type(error).__name__, sync_id=sync_id)
