"""``call`` and ``dlq``: send one action from the command line; inspect and replay dead letters."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from spark_integrations.constants import QUEUE_CALLS, TASK_CALL
from spark_integrations.errors import (
    CallFailedError,
    IntegrationError,
    UsageError,
    WaitTimeoutError,
)
from spark_integrations.workers.output import emit

__all__ = ["call", "dlq"]


def parse_params(raw: str | None) -> dict[str, Any]:
    """``--params`` as a JSON object, or a :class:`UsageError` in one sentence."""
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--params is not valid JSON ({exc.msg} at char {exc.pos}).") from None
    if not isinstance(value, dict):
        raise UsageError("--params must be a JSON object.")
    return value


@click.command()
@click.argument("connection_id")
@click.argument("action")
@click.option("--params", "params_raw", help="The action's params as a JSON object.")
@click.option("--idempotency-key", help="Makes the call's effect happen at most once.")
@click.option("--wait", is_flag=True, help="Wait for the result.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=600.0,
    show_default=True,
    help="With --wait: seconds to wait.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def call(
    connection_id: str,
    action: str,
    params_raw: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Send integrations.call for ACTION on CONNECTION_ID."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from spark_integrations.connectors import get_connector
    from spark_integrations.store.connections import get_connection
    from spark_integrations.tasks.kwargs import check_id, check_idempotency_key
    from spark_integrations.workers.runtime import prepare

    params = parse_params(params_raw)
    check_id("CONNECTION_ID", connection_id)
    check_idempotency_key(idempotency_key)
    rt = prepare()
    with rt.session() as session:
        provider = get_connection(session, connection_id).provider
    # Refuse what the worker would refuse, before anything is queued.
    get_connector(provider).get_action(action).validate(params)
    from spark_integrations.workers.app import app

    kwargs: dict[str, Any] = {"connection_id": connection_id, "action": action, "params": params}
    if idempotency_key is not None:
        kwargs["idempotency_key"] = idempotency_key
    result = app.send_task(TASK_CALL, kwargs=kwargs, queue=QUEUE_CALLS)
    if not wait:
        emit({"task_id": result.id}, as_json, f"queued as task {result.id}.")
        return
    try:
        answer = result.get(timeout=timeout)
    except CeleryTimeout:
        raise WaitTimeoutError(
            f"task {result.id} did not finish within {timeout:g} s; it is still queued or "
            "running (is a worker consuming integrations.calls?)."
        ) from None
    except IntegrationError:
        raise
    except Exception as exc:  # the task's own failure, rebuilt by Celery from its message
        raise CallFailedError(f"the call failed: {exc}") from None
    emit(answer, as_json, json.dumps(answer.get("data"), indent=2, default=str))


@click.group()
def dlq() -> None:
    """Dead letters: tasks the fleet gave up on, with their cause."""


def _view(letter: Any) -> dict[str, Any]:
    return {
        "id": letter.id,
        "task": letter.task,
        "connection_id": letter.connection_id,
        "action": letter.action,
        "error": letter.error,
        "attempts": letter.attempts,
        "created_at": letter.created_at.isoformat(),
        "replayed_at": letter.replayed_at.isoformat() if letter.replayed_at else None,
    }


@dlq.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def dlq_list(limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    from spark_integrations.store import DeadLetter
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        stmt = select(DeadLetter).order_by(DeadLetter.created_at.desc(), DeadLetter.id)
        rows = [_view(d) for d in session.scalars(stmt.limit(limit))]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        replayed = f" (replayed {row['replayed_at']})" if row["replayed_at"] else ""
        click.echo(
            f"{row['id']} {row['created_at']} {row['task']} {row['action'] or '-'} "
            f"after {row['attempts']} attempts: {row['error']}{replayed}"
        )
    if not rows:
        click.echo("no dead letters.")


@dlq.command("replay")
@click.argument("letter_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every letter not replayed yet.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def dlq_replay(letter_id: str | None, replay_all: bool, as_json: bool) -> None:
    """Send dead-lettered tasks again (a new task id each); marks them replayed."""
    from spark_integrations.coordination import IdempotencyStore
    from spark_integrations.tasks.context import coordination_redis
    from spark_integrations.tasks.replay import letters_to_replay, replay_letter
    from spark_integrations.workers.runtime import prepare

    if bool(letter_id) == replay_all:
        raise UsageError("give one dead letter's ID, or --all.")
    rt = prepare()
    from spark_integrations.workers.app import app

    def send(task: str, kwargs: dict[str, Any], queue: str) -> str:
        return str(app.send_task(task, kwargs=kwargs, queue=queue).id)

    replayed: list[dict[str, str]] = []
    with rt.session() as session:
        letters = letters_to_replay(session, letter_id or None)
        idempotency = IdempotencyStore(coordination_redis())
        for letter in letters:
            task_id = replay_letter(letter, box=rt.box, idempotency=idempotency, send=send)
            replayed.append({"id": letter.id, "task_id": task_id})
    emit(replayed, as_json, f"replayed {len(replayed)} dead letter(s).")
