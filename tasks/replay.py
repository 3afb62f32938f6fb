"""Replaying dead letters: what ``spark-integrations dlq replay`` and the console's Replay do.

A replay sends the letter's task again, with exactly the kwargs that were sent (the encrypted
copy, :func:`tasks.deadletters.replay_kwargs`), under a new task id, on the queue the task
belongs to, and marks the letter replayed. A call whose outcome was unknown left an idempotency
record that stops every repeat of its key; an operator replaying it has decided to send it
again, so that record goes first.

Both callers hand in their own way to send a task (the worker's Celery app for the command
line, the gateway's client app for the console) and their own coordination client; the letter
is read and marked in the caller's store session, so the mark commits with the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_integrations.constants import QUEUE_CALLS, TASK_CALL, TASK_ROUTES
from spark_integrations.coordination import IdempotencyStore
from spark_integrations.errors import NotFoundError
from spark_integrations.store import DeadLetter, SecretBox
from spark_integrations.store.types import utcnow
from spark_integrations.tasks.deadletters import replay_kwargs

__all__ = ["SendTask", "letters_to_replay", "replay_letter"]

#: Sends one task: ``(name, kwargs, queue)`` → the new task's id.
SendTask = Callable[[str, dict[str, Any], str], str]


def letters_to_replay(session: Session, letter_id: str | None) -> list[DeadLetter]:
    """The letter of that id, or (``None``) every letter not replayed yet, oldest first.

    Raises:
        NotFoundError: no dead letter has that id.
    """
    if letter_id is not None:
        letter = session.get(DeadLetter, letter_id)
        if letter is None:
            raise NotFoundError(f"no dead letter has the id {letter_id!r}.")
        return [letter]
    return list(
        session.scalars(
            select(DeadLetter)
            .where(DeadLetter.replayed_at.is_(None))
            .order_by(DeadLetter.created_at)
        )
    )


def replay_letter(
    letter: DeadLetter, *, box: SecretBox, idempotency: IdempotencyStore, send: SendTask
) -> str:
    """Send ``letter``'s task again and mark it replayed; returns the new task's id.

    Raises:
        SecretError: the kept kwargs cannot be decrypted with the configured keys.
        CoordinationError: the idempotency record could not be removed (nothing was sent).
        Exception: whatever ``send`` raises when the broker refuses (the letter stays unmarked
            once the caller's transaction rolls back).
    """
    kwargs = replay_kwargs(letter, box)  # exactly what was sent
    key = kwargs.get("idempotency_key")
    if letter.task == TASK_CALL and isinstance(key, str) and letter.connection_id:
        idempotency.forget(idempotency.record_key(letter.connection_id, str(letter.action), key))
    route = TASK_ROUTES.get(letter.task, {"queue": QUEUE_CALLS})
    task_id = send(letter.task, kwargs, route["queue"])
    letter.replayed_at = utcnow()
    return task_id
