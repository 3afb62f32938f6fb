"""``syncs add|list|run|status|pause|resume|remove|reset`` (and ``records``, from
:mod:`workers.commands_records`).

A sync reads one stream of a connection, on a schedule (``--every`` or ``--cron``, in UTC) or
only when asked (``syncs run``), and delivers what changed to its destination. ``syncs run
--wait`` follows the run in the store while it waits: a line updated in place when stderr is a
terminal, else a progress line every few seconds (:mod:`workers.sync_progress`).
"""

from __future__ import annotations

import json
from typing import Any

import click

from spark_integrations.constants import QUEUE_BACKFILLS, QUEUE_SYNCS, TASK_SYNC
from spark_integrations.errors import UsageError
from spark_integrations.workers.commands_records import DEFAULT_RECORDS_LIMIT, records
from spark_integrations.workers.output import emit
from spark_integrations.workers.sync_progress import wait_for_run

__all__ = ["DEFAULT_RECORDS_LIMIT", "records", "syncs"]

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def schedule_text(schedule: str | None) -> str:
    """A stored schedule as a person reads it: ``every 5m``, ``cron '0 * * * *' UTC``."""
    if schedule is None:
        return "on demand"
    kind, _, value = schedule.partition(":")
    if kind == "every":
        return f"every {_duration_text(float(value))}"
    return f"cron '{value}' UTC"


def parse_params(
    texts: tuple[str, ...], option: str = "--param", what: str = "VALUE"
) -> dict[str, str]:
    """``--param NAME=VALUE`` (or ``--with NAME=TEMPLATE``) options as a dict of text.

    Raises:
        UsageError: an option without ``=`` or without a name, or a name given twice.
    """
    params: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"{option} takes NAME={what}, not {text[:60]!r}.")
        if name in params:
            raise UsageError(f"{option} {name} is given twice.")
        params[name] = value
    return params


def _sync_line(view: dict[str, Any]) -> str:
    state = "enabled" if view["enabled"] else "paused"
    due = f", next {view['next_run_at']}" if view["enabled"] and view["next_run_at"] else ""
    given = view.get("params") or {}
    params = "".join(
        f" {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in given.items()
    )
    templates = "".join(
        f" {k}={json.dumps(v)}" for k, v in (view.get("destination_params") or {}).items()
    )
    # Shown when it is not the default: a sync that sends new records only says so.
    deliver = " (new records only)" if view.get("deliver") == "new" else ""
    return (
        f"{view['id']}  {view['connection_id']} {view['stream']}{params}  "
        f"{schedule_text(view['schedule'])} -> {view['destination']}{templates}{deliver}  "
        f"{state}{due}"
    )


@click.group()
def syncs() -> None:
    """Syncs: a stream of a connection read on a schedule and delivered to a destination."""


@syncs.command("add")
@click.argument("connection_id")
@click.argument("stream")
@click.option("--every", help="Run every DURATION, like 30s, 5m, 1h or 1d.")
@click.option("--cron", "cron_expr", help="Run on a five-field cron expression, in UTC.")
@click.option(
    "--destination",
    default="store",
    show_default=True,
    help="'store' (the record store), 'action:CONNECTION_ID:ACTION' or "
    "'spark:CONNECTION_ID:WORKFLOW_ID'.",
)
@click.option(
    "--with",
    "with_texts",
    multiple=True,
    metavar="NAME=TEMPLATE",
    help="A param of the destination (repeatable), a template of the record's fields like "
    "'{title}: {user.login}'; docs/destinations.md.",
)
@click.option(
    "--deliver",
    metavar="changes|new",
    help="What an action or spark destination sends: 'changes' (the default), each new or "
    "changed record version; 'new', only records the sync never delivered before.",
)
@click.option(
    "--param",
    "param_texts",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter of the stream (repeatable); `connectors list` shows each stream's.",
)
@JSON_OPTION
def add(
    connection_id: str,
    stream: str,
    every: str | None,
    cron_expr: str | None,
    destination: str,
    param_texts: tuple[str, ...],
    with_texts: tuple[str, ...],
    deliver: str | None,
    as_json: bool,
) -> None:
    """Define a sync of STREAM on CONNECTION_ID.

    Without --every or --cron the sync runs only on demand (`syncs run ID`). The stream's
    parameters (a channel, a repository) are given with --param NAME=VALUE, checked against
    the stream before anything is stored, and passed to every page of every run. The
    destination's params are given with --with NAME=TEMPLATE (an action's params, a spark
    workflow's input), each rendered from every record it delivers. --deliver new sends
    only records the sync never delivered before: a record changed later is stored, not sent.
    """
    from spark_integrations.connectors import get_connector
    from spark_integrations.destinations import destination_for
    from spark_integrations.destinations.base import DELIVER_MODES
    from spark_integrations.store.connections import get_connection
    from spark_integrations.store.schedules import cron_schedule, every_schedule
    from spark_integrations.store.syncs import add_sync, sync_view
    from spark_integrations.workers.runtime import prepare

    if every is not None and cron_expr is not None:
        raise UsageError("give --every or --cron, not both.")
    given = parse_params(param_texts)
    schedule = None
    if every is not None:
        schedule = every_schedule(every)
    elif cron_expr is not None:
        schedule = cron_schedule(cron_expr)
    dest = destination_for(destination, parse_params(with_texts, "--with", "TEMPLATE"))
    if deliver is not None:
        if not dest.chooses_delivery() and deliver in DELIVER_MODES:
            raise UsageError(
                f"--deliver does not apply to the {dest.kind} destination (it keeps every "
                "version of every record); it is for destinations that send (action, spark)."
            )
        dest.use_deliver(deliver)
    rt = prepare(redis=False)
    with rt.session() as session:
        conn = get_connection(session, connection_id)
        params = get_connector(conn.provider).get_stream(stream).validate_params(given)
        dest.check(session)
        view = sync_view(
            add_sync(
                session,
                connection_id=connection_id,
                stream=stream,
                schedule=schedule,
                destination=dest.spec,
                params=params,
                destination_params=dest.params,
                deliver=dest.deliver_mode,
            )
        )
    when = (
        f"next run at {view['next_run_at']}"
        if schedule
        else f"it runs on demand: `spark-integrations syncs run {view['id']}`"
    )
    emit(
        view,
        as_json,
        f"added sync {view['id']} ({schedule_text(schedule)} -> {view['destination']}"
        f"{', new records only' if view['deliver'] == 'new' else ''}); {when}.",
    )


@syncs.command("list")
@JSON_OPTION
def list_(as_json: bool) -> None:
    """List syncs, oldest first."""
    from spark_integrations.store.syncs import list_syncs, sync_view
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        rows = [sync_view(s) for s in list_syncs(session)]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        click.echo(_sync_line(row))
    if not rows:
        click.echo("no syncs.")


def _run_line(run: dict[str, Any]) -> str:
    kind = " full refresh" if run["full_refresh"] else ""
    error = f"  error: {run['error']}" if run["error"] else ""
    return (
        f"{run['run_id']}  {run['status']:<9}{kind} {run['pages']:,} pages, "
        f"{run['records']:,} records, {run['retries']:,} retries; "
        f"started {run['started_at'] or '-'}, finished {run['finished_at'] or '-'}{error}"
    )


@syncs.command("status")
@click.argument("sync_id")
@JSON_OPTION
def status(sync_id: str, as_json: bool) -> None:
    """Show a sync and its 20 newest runs, newest first."""
    from spark_integrations.store.runs import run_view
    from spark_integrations.store.syncs import get_sync, recent_runs, sync_view
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        view = sync_view(get_sync(session, sync_id))
        view["runs"] = [run_view(r) for r in recent_runs(session, sync_id)]
    if as_json:
        emit(view, True)
        return
    click.echo(_sync_line(view))
    for run in view["runs"]:
        click.echo(_run_line(run))
    if not view["runs"]:
        click.echo("no runs yet.")


def _set_enabled(sync_id: str, enabled: bool, as_json: bool) -> None:
    from spark_integrations.store.syncs import set_enabled, sync_view
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        view = sync_view(set_enabled(session, sync_id, enabled))
    emit(view, as_json, f"{'resumed' if enabled else 'paused'} sync {sync_id}.")


@syncs.command("pause")
@click.argument("sync_id")
@JSON_OPTION
def pause(sync_id: str, as_json: bool) -> None:
    """Stop scheduling a sync (a run in progress goes on; `syncs run` still works)."""
    _set_enabled(sync_id, False, as_json)


@syncs.command("resume")
@click.argument("sync_id")
@JSON_OPTION
def resume(sync_id: str, as_json: bool) -> None:
    """Schedule a paused sync again, next due one period from now."""
    _set_enabled(sync_id, True, as_json)


@syncs.command("remove")
@click.argument("sync_id")
@JSON_OPTION
def remove(sync_id: str, as_json: bool) -> None:
    """Remove a sync with its cursor, runs and stored records."""
    from spark_integrations.store.syncs import remove_sync
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        remove_sync(session, sync_id)
    emit({"id": sync_id, "removed": True}, as_json, f"removed sync {sync_id}.")


@syncs.command("reset")
@click.argument("sync_id")
@JSON_OPTION
def reset(sync_id: str, as_json: bool) -> None:
    """Move a sync's cursor back to the start: its next run reads the whole stream."""
    from spark_integrations.store.syncs import get_sync, reset_cursor, sync_view
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        reset_cursor(session, sync_id)
        view = sync_view(get_sync(session, sync_id))
    emit(view, as_json, f"reset sync {sync_id}: its next run reads the whole stream.")


@syncs.command("run")
@click.argument("sync_id")
@click.option("--full-refresh", is_flag=True, help="Read the whole stream (a backfill).")
@click.option("--wait", is_flag=True, help="Wait for the run's result, showing its progress.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    help="With --wait: seconds to wait (default: until the run ends).",
)
@JSON_OPTION
def run(sync_id: str, full_refresh: bool, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Send integrations.sync for SYNC_ID now, whatever its schedule."""
    from spark_integrations.store.syncs import get_sync
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        get_sync(session, sync_id)
    # The broker only once the sync is known to exist: a mistyped id starts nothing.
    if rt.settings.embedded:
        rt.embedded_redis.ensure_running()
    from spark_integrations.workers.app import app

    queue = QUEUE_BACKFILLS if full_refresh else QUEUE_SYNCS
    kwargs = {"sync_id": sync_id, "full_refresh": full_refresh}
    result = app.send_task(TASK_SYNC, kwargs=kwargs, queue=queue)
    if not wait:
        out = {"sync_id": sync_id, "task_id": result.id}
        emit(out, as_json, f"queued sync {sync_id} as task {result.id} on {queue}.")
        return
    answer = wait_for_run(rt, result, sync_id, timeout)
    if answer.get("skipped"):
        reason = str(answer.get("reason") or "skipped").rstrip(".")
        text = f"sync {sync_id} was not run: {reason}."
    else:
        text = (
            f"sync {sync_id} run {answer.get('run_id')}: {answer.get('records', 0):,} records "
            f"in {answer.get('pages', 0):,} pages; cursor {json.dumps(answer.get('cursor'))}."
        )
    emit(answer, as_json, text)
