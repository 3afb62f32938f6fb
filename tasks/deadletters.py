"""Dead letters: the tasks the fleet gave up on, kept with their cause for inspection and replay.

Each letter keeps two copies of the task's kwargs:

* for replay, exactly what was sent, encrypted like every secret at rest (a caller may have put a
  secret where it does not belong, and a replay must send the same call, ``NaN`` and all);
* for display, a redacted copy: anything under a secret-looking name masked in any case style
  (:func:`redaction.redact`), and what the store cannot hold (a number that is not finite, text
  that is not valid Unicode, a NUL) written out as text.

A letter is written whatever the input: a bad call is refused with a dead letter, never with a
store error of its own. Once stored it is announced to subscribers as ``dead_letter.written``
(:func:`webhooks.outbound.announce_dead_letter`), but for a failed delivery of an event, which
:mod:`tasks.deliveries` announces itself; neither is told to the subscriber whose delivery (or
spark run) failed, so failing subscribers cannot loop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from spark_integrations import metrics
from spark_integrations.constants import TASK_DELIVER_EVENT
from spark_integrations.redaction import REDACTED, redact
from spark_integrations.store import DeadLetter, SecretBox
from spark_integrations.tasks.context import store_session
from spark_integrations.tasks.lookup import secret_box
from spark_integrations.webhooks.outbound import announce_dead_letter

__all__ = ["REDACTED", "displayable", "redact", "replay_kwargs", "write_dead_letter"]

# The columns' widths (store.models.DeadLetter).
_ID_CHARS = 36
_NAME_CHARS = 200
# An error message is one sentence; one that is longer was not written by the fleet.
_ERROR_CHARS = 4000


def _text(value: str) -> str:
    """``value`` as the store can hold it: lone surrogates and NUL written out as escapes."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def displayable(value: Any) -> Any:
    """A copy of ``value`` that any store's JSON column holds: non-finite numbers as text, text
    made valid, keys made text. (Redaction happens before, on the original names.)"""
    if isinstance(value, Mapping):
        return {_text(str(k)): displayable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [displayable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(repr(value))


def _column(value: Any, width: int) -> str | None:
    """A string id or name for a column of ``width`` characters, or None when it cannot be one."""
    if not isinstance(value, str) or not value:
        return None
    text = _text(value)
    return text if len(text) <= width else None


def _sealed(box: SecretBox, kwargs: Mapping[str, Any]) -> bytes | None:
    """The kwargs exactly as sent, as an encrypted JSON document; None if JSON cannot hold them
    (nothing a broker delivers is like that)."""
    try:
        return box.encrypt(json.dumps(dict(kwargs), allow_nan=True, ensure_ascii=True))
    except (TypeError, ValueError, RecursionError):
        return None


def write_dead_letter(
    *,
    task: str,
    task_id: str | None,
    kwargs: Mapping[str, Any],
    error: str,
    attempts: int,
) -> str:
    """Store a dead letter, announce it (``dead_letter.written``) and return its id."""
    message = _text(error)
    if len(message) > _ERROR_CHARS:
        message = message[: _ERROR_CHARS - 3] + "..."
    with store_session() as session:
        letter = DeadLetter(
            task=task,
            task_id=_text(task_id)[:_NAME_CHARS] if task_id else None,
            connection_id=_column(kwargs.get("connection_id"), _ID_CHARS),
            action=_column(kwargs.get("action"), _NAME_CHARS),
            kwargs=displayable(redact(dict(kwargs))),
            replay_kwargs=_sealed(secret_box(), kwargs),
            error=message,
            attempts=attempts,
        )
        session.add(letter)
        session.flush()
        letter_id, connection_id, action = letter.id, letter.connection_id, letter.action
    metrics.count("dead_letters", task=_text(task)[:_NAME_CHARS])
    if task != TASK_DELIVER_EVENT:
        announce_dead_letter(
            {
                "dead_letter_id": letter_id,
                "task": _text(task)[:_NAME_CHARS],
                "connection_id": connection_id,
                "action": action,
                "error": message,
                "attempts": attempts,
            },
            idempotency_key=kwargs.get("idempotency_key"),
        )
    return letter_id


def replay_kwargs(letter: DeadLetter, box: SecretBox) -> dict[str, Any]:
    """The kwargs to send again: the encrypted copy of what was sent, or, for a letter written
    before copies were kept, the displayed one.

    Raises:
        SecretError: the copy cannot be decrypted with the configured keys.
    """
    if letter.replay_kwargs is None:
        return dict(letter.kwargs)
    value = json.loads(box.decrypt(letter.replay_kwargs))
    return dict(value) if isinstance(value, dict) else dict(letter.kwargs)
