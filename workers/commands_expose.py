"""``expose key|action|sync|list|remove``: what automagik-spark sees through the gateway's /spark.

Spark registers the fleet as an Automagik Agents source at ``PUBLIC_URL/spark`` with the key
``expose key`` prints; each exposure is then a flow in spark's ``/api/v1/workflows/remote``,
which spark can sync into a workflow, run and schedule (docs/spark-source.md). Nothing is
exposed by default.
"""

from __future__ import annotations

import click

from spark_integrations.workers.commands_calls import parse_params
from spark_integrations.workers.output import emit

__all__ = ["expose"]

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
KEY_HELP = """Issue a new key for spark; the previous one stops working at once.

The key is printed once and only its SHA-256 is kept. Register the fleet in spark with it:
POST /api/v1/sources/ {"source_type": "automagik-agents", "url": "PUBLIC_URL/spark",
"api_key": KEY}. After a new key, update the source in spark
(PATCH /api/v1/sources/ID {"api_key": KEY}; spark 0.3.7 has no PUT there).
"""


@click.group()
def expose() -> None:
    """What automagik-spark sees through the gateway's /spark (nothing by default)."""


@expose.command("key", help=KEY_HELP)
@JSON_OPTION
def key(as_json: bool) -> None:
    """Issue a new key for spark (printed once; replaces the previous one)."""
    from spark_integrations.store.exposures import issue_spark_key
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        issued = issue_spark_key(session)
    if as_json:
        emit({"key": issued}, True)
        return
    click.echo(issued)
    click.echo(
        "this key is shown once and replaces any earlier one; register the fleet in spark "
        f"as an automagik-agents source at {rt.settings.public_url.rstrip('/')}/spark with it.",
        err=True,
    )


@expose.command("action")
@click.argument("connection_id")
@click.argument("action")
@click.option("--name", help="The flow's name in spark (default: <connection name>-<action>).")
@click.option("--params", "params_raw", help="Params fixed for every run, as a JSON object.")
@JSON_OPTION
def expose_action(
    connection_id: str, action: str, name: str | None, params_raw: str | None, as_json: bool
) -> None:
    """Expose ACTION of CONNECTION_ID to spark.

    Spark's input becomes the action's one open text param, or, when it is a JSON object, is
    merged with the fixed --params (it may not change them).
    """
    from spark_integrations.connectors import get_connector
    from spark_integrations.connectors.actions import Action
    from spark_integrations.errors import UsageError
    from spark_integrations.gateway.spark_inputs import describe_action
    from spark_integrations.store.connections import get_connection
    from spark_integrations.store.exposures import add_exposure, default_action_name, exposure_view
    from spark_integrations.workers.runtime import prepare

    fixed = parse_params(params_raw)
    rt = prepare(redis=False)
    with rt.session() as session:
        conn = get_connection(session, connection_id)
        found = get_connector(conn.provider).get_action(action)
        unknown = sorted(set(fixed) - {*found.params, *found.optional})
        if unknown:
            known = ", ".join([*found.params, *found.optional]) or "none"
            raise UsageError(f"{action} takes no param {unknown[0]!r}; it takes {known}.")
        for param, value in fixed.items():
            # Each fixed value is checked alone (its type, that it can be sent); the other
            # params come from spark's input at each run, where the whole is checked again.
            declared = found.params.get(param) or found.optional[param]
            Action(found.name, "POST", "/", optional={param: declared}).validate({param: value})
        exposure = add_exposure(
            session,
            name=name if name is not None else default_action_name(conn.name, action),
            description=describe_action(conn.name, conn.provider, found, fixed),
            connection_id=conn.id,
            action=action,
            params=fixed,
        )
        view = exposure_view(exposure)
    emit(view, as_json, f"exposed {view['name']}: {view['description']}")


@expose.command("sync")
@click.argument("sync_id")
@click.option("--name", help="The flow's name in spark (default: sync-<stream>-<short id>).")
@JSON_OPTION
def expose_sync(sync_id: str, name: str | None, as_json: bool) -> None:
    """Expose SYNC_ID to spark: each run of the flow runs the sync (incremental)."""
    from spark_integrations.gateway.spark_inputs import describe_sync
    from spark_integrations.store.connections import get_connection
    from spark_integrations.store.exposures import add_exposure, default_sync_name, exposure_view
    from spark_integrations.store.syncs import get_sync
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        sync = get_sync(session, sync_id)
        conn = get_connection(session, sync.connection_id)
        exposure = add_exposure(
            session,
            name=name if name is not None else default_sync_name(sync.stream, sync.id),
            description=describe_sync(sync.stream, conn.name, sync.destination),
            sync_id=sync.id,
        )
        view = exposure_view(exposure)
    emit(view, as_json, f"exposed {view['name']}: {view['description']}")


@expose.command("list")
@JSON_OPTION
def expose_list(as_json: bool) -> None:
    """List what spark sees, by name."""
    from spark_integrations.store.exposures import exposure_view, list_exposures
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        rows = [exposure_view(e) for e in list_exposures(session)]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        what = (
            f"sync {row['sync_id']}"
            if row["kind"] == "sync"
            else f"{row['action']} on {row['connection_id']}"
        )
        click.echo(f"{row['name']}  {what}: {row['description']}")
    if not rows:
        click.echo("nothing is exposed; `expose action` or `expose sync` adds a flow for spark.")


@expose.command("remove")
@click.argument("name")
def expose_remove(name: str) -> None:
    """Stop exposing NAME (a spark workflow synced from it then fails its runs with 404)."""
    from spark_integrations.store.exposures import remove_exposure
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        remove_exposure(session, name)
    click.echo(f"{name} is no longer exposed.")
