"""Dead letters: the tasks the fleet gave up on, kept with their cause for inspection and replay."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from spark_integrations.store import DeadLetter
from spark_integrations.tasks.context import store_session

__all__ = ["redact", "write_dead_letter"]

# Task kwargs are ids and parameters by contract; a key that looks like a secret is still masked
# before it is stored, in case a caller put one where it does not belong.
# Names ending in a secret word (access_token, client_secret, api_key, ...) are masked; paging
# tokens and counts such as max_tokens are parameters, not secrets.
_SECRET_KEY = re.compile(
    r"(^|[_-])(secrets?|token|password|passwd|pass|api[_-]?key|private[_-]?key|authorization"
    r"|signature|credentials?|cookie)$",
    re.I,
)
_NOT_SECRET = re.compile(r"^(page|next|pagination|sync|continuation)[_-]?token$", re.I)
REDACTED = "[redacted]"


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET.match(key)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every entry under a secret-looking key masked."""
    if isinstance(value, Mapping):
        return {str(k): REDACTED if _is_secret_key(str(k)) else redact(v) for k, v in value.items()}
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
