"""``webhooks list|show|replay`` and ``webhooks route add|list|remove``: the webhook events the
gateway stored, and where a connection's events go (:mod:`webhooks.routes`).

An event no route matches refreshes the streams its connector declares for it (``connectors
list --json`` shows them as ``webhook_events``), or does nothing.
"""

from __future__ import annotations

import json
from typing import Any

import click

from spark_integrations.constants import QUEUE_WEBHOOKS, TASK_PROCESS_WEBHOOK
from spark_integrations.errors import ServiceError, UsageError
from spark_integrations.workers.commands_syncs import parse_params
from spark_integrations.workers.output import emit

__all__ = ["webhooks"]

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
DEFAULT_LIST_LIMIT = 100


@click.group()
def webhooks() -> None:
    """Incoming webhook events, and where each connection's events go."""


@webhooks.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_LIST_LIMIT, show_default=True)
@JSON_OPTION
def list_events(limit: int, as_json: bool) -> None:
    """List received webhook events, newest first."""
    from sqlalchemy import select

    from spark_integrations.store import WebhookEvent
    from spark_integrations.webhooks.processing import event_view
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        stmt = select(WebhookEvent).order_by(WebhookEvent.received_at.desc(), WebhookEvent.id)
        rows = [event_view(e) for e in session.scalars(stmt.limit(limit))]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        click.echo(
            f"{row['id']}  {row['received_at']}  {row['provider']} {row['type'] or '-'}  "
            f"{row['status']}  delivery {row['delivery_id']}"
        )
    if not rows:
        click.echo("no webhook events.")


@webhooks.command("show")
@click.argument("event_id")
@JSON_OPTION
def show_event(event_id: str, as_json: bool) -> None:
    """Show one event: its status, error, attempts and what processing did (not its payload)."""
    from spark_integrations.errors import NotFoundError
    from spark_integrations.store import WebhookEvent
    from spark_integrations.store.types import iso_z
    from spark_integrations.webhooks.processing import event_view
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        event = session.get(WebhookEvent, event_id)
        if event is None:
            raise NotFoundError(f"no webhook event {event_id!r}; `webhooks list` shows them.")
        view = {
            **event_view(event),
            "error": event.error,
            "attempts": event.attempts,
            "processed_at": iso_z(event.processed_at),
            "result": event.result,
        }
    if as_json:
        emit(view, True)
        return
    click.echo(
        f"{view['id']}  {view['provider']} {view['type'] or '-'}  {view['status']} after "
        f"{view['attempts']} attempt(s); received {view['received_at']}, processed "
        f"{view['processed_at'] or '-'}"
    )
    if view["error"]:
        click.echo(f"error: {view['error']}")
    click.echo(f"result: {json.dumps(view['result'], sort_keys=True)}")


@webhooks.command("replay")
@click.argument("event_id")
@JSON_OPTION
def replay_event(event_id: str, as_json: bool) -> None:
    """Process a stored event again, under a new task id.

    Its routes run again: the calls of a replay carry keys of their own (the replay's count
    is in them), so they are made, not answered from the first processing's records.
    """
    from spark_integrations.webhooks.processing import reopen_event
    from spark_integrations.webhooks.sweep import mark_unsent
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        event = reopen_event(session, event_id, stale_after=rt.settings.visibility_timeout)
        replay = int((event.result or {}).get("replay", 1))
    # The broker only once the event is reopened; should the send fail, the event waits as
    # received, marked unsent, and the sweep sends it once the broker answers.
    try:
        if rt.settings.embedded:
            rt.embedded_redis.ensure_running()
        from spark_integrations.workers.app import app

        sent = app.send_task(
            TASK_PROCESS_WEBHOOK, kwargs={"event_id": event_id}, queue=QUEUE_WEBHOOKS
        )
    except Exception as exc:  # kombu's, redis' and the embedded Redis' errors alike
        with rt.session() as session:
            mark_unsent(session, event_id)
        raise ServiceError(
            f"webhook event {event_id} is reopened (replay {replay}), but its task could not be "
            f"sent ({type(exc).__name__}); the sweep sends it once the broker answers."
        ) from None
    emit(
        {"id": event_id, "task_id": sent.id, "replay": replay},
        as_json,
        f"replaying webhook event {event_id} (replay {replay}) as task {sent.id}.",
    )


@webhooks.group("route")
def route() -> None:
    """Where a connection's events go: a sync, an action, a spark workflow."""


def _target(
    sync_id: str | None, action: str | None, spark: str | None
) -> tuple[str, str | None, str | None]:
    """(kind, target connection, action or workflow) from the one target option given."""
    given = [(k, v) for k, v in (("sync", sync_id), ("action", action), ("spark", spark)) if v]
    if len(given) != 1:
        raise UsageError(
            "give one of --sync SYNC_ID, --action CONNECTION_ID:ACTION or "
            "--spark CONNECTION_ID:WORKFLOW_ID."
        )
    kind, value = given[0]
    if kind == "sync":
        return kind, None, value
    connection_id, sep, name = value.partition(":")
    what = "ACTION" if kind == "action" else "WORKFLOW_ID"
    if not sep or not connection_id.strip() or not name.strip() or ":" in name:
        raise UsageError(f"--{kind} is written CONNECTION_ID:{what}, not {value[:80]!r}.")
    return kind, connection_id, name


def _route_line(view: dict[str, Any]) -> str:
    if view["kind"] == "sync":
        target = f"sync {view['sync_id']}"
    elif view["kind"] == "action":
        target = f"{view['action']} on {view['target_connection_id']}"
    else:
        target = f"spark workflow {view['workflow_id']} on {view['target_connection_id']}"
    templates = "".join(f" {k}={json.dumps(v)}" for k, v in view["params"].items())
    return f"{view['id']}  {view['connection_id']} {view['event_type']} -> {target}{templates}"


@route.command("add")
@click.argument("connection_id")
@click.argument("event_type")
@click.option("--sync", "sync_id", metavar="SYNC_ID", help="Run this sync now.")
@click.option("--action", metavar="CONNECTION_ID:ACTION", help="Call this action.")
@click.option("--spark", metavar="CONNECTION_ID:WORKFLOW_ID", help="Run this spark workflow.")
@click.option(
    "--with",
    "with_texts",
    multiple=True,
    metavar="NAME=TEMPLATE",
    help="A param of the action (repeatable), or spark's input, as a template of the event's "
    "payload like '{issue.title}'.",
)
@JSON_OPTION
def route_add(
    connection_id: str,
    event_type: str,
    sync_id: str | None,
    action: str | None,
    spark: str | None,
    with_texts: tuple[str, ...],
    as_json: bool,
) -> None:
    """Send CONNECTION_ID's events of EVENT_TYPE to a sync, an action or a spark workflow.

    EVENT_TYPE is the provider's event type or an fnmatch pattern of them: `issues` matches
    issues and issues.opened, `payment_intent.*` every payment intent event, `*` every event.
    Templates render the event's payload as `syncs add --with` renders a record; a call is
    made once per event and route, however often the event is delivered.
    """
    from spark_integrations.webhooks.routes import add_route, check_pattern, route_view
    from spark_integrations.workers.runtime import prepare

    check_pattern(event_type)
    kind, target, name = _target(sync_id, action, spark)
    templates = parse_params(with_texts, "--with", "TEMPLATE")
    if kind == "sync" and templates:
        raise UsageError("--with goes with --action or --spark; a sync route takes none.")
    rt = prepare(redis=False)
    with rt.session() as session:
        view = route_view(
            add_route(
                session,
                connection_id=connection_id,
                event_type=event_type,
                kind=kind,
                sync_id=name if kind == "sync" else None,
                target_connection_id=target,
                name=name,
                templates=templates,
            )
        )
    emit(view, as_json, f"added route {_route_line(view)}")


@route.command("list")
@click.argument("connection_id", required=False)
@JSON_OPTION
def route_list(connection_id: str | None, as_json: bool) -> None:
    """List routes (of one connection), oldest first."""
    from spark_integrations.store.connections import get_connection
    from spark_integrations.webhooks.routes import list_routes, route_view
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        if connection_id is not None:
            get_connection(session, connection_id)
        rows = [route_view(r) for r in list_routes(session, connection_id)]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        click.echo(_route_line(row))
    if not rows:
        click.echo("no webhook routes; events refresh the streams their connector declares.")


@route.command("remove")
@click.argument("route_id")
@JSON_OPTION
def route_remove(route_id: str, as_json: bool) -> None:
    """Remove a route."""
    from spark_integrations.webhooks.routes import remove_route
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        remove_route(session, route_id)
    emit({"id": route_id, "removed": True}, as_json, f"removed webhook route {route_id}.")
