"""Dead letters: the tasks the fleet gave up on, kept with their cause for inspection and replay."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from store import DeadLetter
from tasks.context import store_session

__all__ = ["redact", "write_dead_letter"]

# Task kwargs are ids and parameters by contract; a key that looks like a secret is still masked
# before it is stored, in case a caller put one where it does not belong.
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|authorization|signature)", re.I
)
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """A copy of ``value`` with every entry under a secret-looking key masked."""
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if _SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def write_dead_letter(
    *,
    task: str,
    task_id: str | None,
    kwargs: Mapping[str, Any],
    error: str,
    attempts: int,
) -> str:
    """Store a dead letter and return its id."""
    connection_id = kwargs.get("connection_id")
    action = kwargs.get("action")
    with store_session() as session:
        letter = DeadLetter(
            task=task,
            task_id=task_id,
            connection_id=connection_id if isinstance(connection_id, str) else None,
            action=action if isinstance(action, str) else None,
            kwargs=redact(dict(kwargs)),
            error=error,
            attempts=attempts,
        )
        session.add(letter)
        session.flush()
        return letter.id
