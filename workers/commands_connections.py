"""``spark-integrations connections add|list|update|remove``.

Secrets can be given without landing in shell history or ``ps``: ``--secret KEY`` asks for the
value without echo (or reads one line from stdin when it is not a terminal), and
``--secret KEY=@FILE`` reads it from a file. ``--secret KEY=VALUE`` works too, for scripts.

What is stored is checked first, each refusal one sentence: a secret must be sendable as its
scheme requires (:func:`connectors.auth.check_secret_values`), and the connection's URLs must
meet the outbound URL policy (:mod:`connectors.urlpolicy`), those its connector declares among
its endpoint keys included. Changing an endpoint key (a URL, or a key the connector declares, such
as a region) needs the connection's secrets again and drops its OAuth tokens
(:func:`store.connections.update_connection`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from spark_integrations import settings as settings_module
from spark_integrations.connectors import Connector, get_connector
from spark_integrations.connectors.auth import check_secret_values
from spark_integrations.connectors.urlpolicy import check_url
from spark_integrations.errors import UsageError
from spark_integrations.store.connections import (
    add_connection,
    connection_secrets,
    connection_view,
    list_connections,
    merge_config,
    moved_endpoints,
    remove_connection,
    update_connection,
)

__all__ = ["connections", "parse_config", "parse_secrets"]

SECRET_HELP = "KEY=VALUE, KEY=@FILE (read a file) or KEY alone (asked without echo). Repeatable."


def _refuse_constant(name: str) -> Any:
    raise UsageError(f"--config holds {name}, which is not a JSON number; use a finite number.")


def parse_config(raw: str | None) -> dict[str, Any]:
    """The ``--config`` JSON object, or a :class:`UsageError` saying what is wrong with it."""
    if raw is None:
        return {}
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--config is not valid JSON ({exc.msg} at character {exc.pos})."
        ) from None
    if not isinstance(value, dict):
        raise UsageError('--config must be a JSON object, like \'{"base_url": "https://..."}\'.')
    return value


def _read_secret_file(key: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read()
    except OSError as exc:
        raise UsageError(
            f"cannot read the file for secret {key} ({path}: {exc.strerror})."
        ) from None
    return value.rstrip("\r\n")


def _ask_secret(key: str) -> str:
    if sys.stdin.isatty():
        return str(click.prompt(f"{key}", hide_input=True, err=True))
    line = sys.stdin.readline()
    if not line:
        raise UsageError(f"secret {key} was to be read from stdin, which is empty.")
    return line.rstrip("\r\n")


def parse_secrets(items: tuple[str, ...]) -> dict[str, str]:
    """Turn the ``--secret`` options into a dict, asking or reading files as they say."""
    secrets: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not key:
            raise UsageError(
                "--secret needs a key, like --secret api_key or --secret api_key=@FILE."
            )
        if key in secrets:
            raise UsageError(f"secret {key} is given twice.")
        if not sep:
            value = _ask_secret(key)
        elif value.startswith("@"):
            value = _read_secret_file(key, value[1:])
        if not value:
            raise UsageError(f"secret {key} is empty.")
        secrets[key] = value
    return secrets


def check_stored_values(
    connector: type[Connector], config: dict[str, Any], secrets: dict[str, str]
) -> None:
    """Refuse a config or secrets the fleet could not use safely, in one sentence."""
    connector.validate_config(config)
    connector.validate_secrets(secrets)
    check_secret_values(secrets)
    hosts = settings_module.load().allow_http_hosts
    for key in connector.url_keys():
        if key in config:
            check_url(key, config[key], http_hosts=hosts)


def _print_connections(rows: list[dict[str, Any]], reasons: dict[str, str | None]) -> None:
    if not rows:
        click.echo("no connections.")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        reason = reasons.get(r["id"])
        why = f" ({reason})" if reason else ""
        click.echo(f"{r['id']}  {r['provider']:<12} {r['name']:<{width}}  {r['status']}{why}")


@click.group()
def connections() -> None:
    """Accounts at providers, with their config and encrypted secrets."""


@connections.command("add")
@click.argument("provider")
@click.option("--name", required=True, help="A unique name for the connection.")
@click.option("--config", "config_raw", help="Config as a JSON object.")
@click.option("--secret", "secret_items", multiple=True, help=SECRET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def add(
    provider: str, name: str, config_raw: str | None, secret_items: tuple[str, ...], as_json: bool
) -> None:
    """Add a connection to PROVIDER."""
    from spark_integrations.workers.runtime import prepare

    connector = get_connector(provider)
    config = parse_config(config_raw)
    if not name.strip():
        raise UsageError("--name must not be empty.")
    secrets = parse_secrets(secret_items)
    check_stored_values(connector, config, secrets)
    rt = prepare(redis=False)
    with rt.session() as session:
        conn = add_connection(
            session,
            rt.box,
            provider=provider,
            name=name.strip(),
            config=config,
            secrets=secrets,
            status=connector.initial_status(secrets, config),
        )
        view = connection_view(conn)
    hint = (
        " (run `spark-integrations connect ID` to authorise it)"
        if view["status"] == "needs_auth"
        else ""
    )
    click.echo(
        json.dumps(view, indent=2) if as_json else f"added {view['id']} ({view['status']}){hint}."
    )


@connections.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def list_(as_json: bool) -> None:
    """List connections (never their secrets)."""
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        found = list_connections(session)
        rows = [connection_view(c) for c in found]
        reasons = {c.id: c.status_reason for c in found if c.status != "active"}
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_connections(rows, reasons)


@connections.command("update")
@click.argument("connection_id")
@click.option("--name", help="A new unique name.")
@click.option(
    "--config", "config_raw", help="JSON object merged into the config; null removes a key."
)
@click.option("--secret", "secret_items", multiple=True, help=SECRET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def update(
    connection_id: str,
    name: str | None,
    config_raw: str | None,
    secret_items: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change a connection's name, config or secrets."""
    from spark_integrations.store.connections import get_connection
    from spark_integrations.workers.runtime import prepare

    patch = parse_config(config_raw)
    if name is not None and not name.strip():
        raise UsageError("--name must not be empty.")
    if not patch and not secret_items and name is None:
        raise UsageError("nothing to update: give --name, --config or --secret.")
    rt = prepare(redis=False)
    with rt.session() as session:
        conn = get_connection(session, connection_id)
        connector = get_connector(conn.provider)
        secrets = parse_secrets(secret_items)
        check_stored_values(connector, merge_config(conn.config, patch), secrets)
        moved = moved_endpoints(conn.config, patch, connector.endpoint_keys())
        conn = update_connection(
            session,
            rt.box,
            connection_id,
            config=patch,
            secrets=secrets,
            name=name.strip() if name is not None else None,
            endpoint_keys=connector.endpoint_keys(),
        )
        status = connector.initial_status(connection_secrets(rt.box, conn), conn.config)
        if moved and conn.status != "disabled":
            # New endpoints: tokens from the old ones were dropped; credentials usable on their
            # own keep it active, an OAuth connection must be connected again.
            conn.status = status
            conn.status_reason = (
                f"its {moved[0]} changed; connect it again" if status == "needs_auth" else None
            )
        elif conn.status in ("needs_auth", "needs_reauth") and status == "active":
            # The new credentials let the fleet call on their own (an API key, a fixed client
            # secret of a client-credentials connection): the connection is usable again.
            conn.status, conn.status_reason = "active", None
        view = connection_view(conn)
    click.echo(json.dumps(view, indent=2) if as_json else f"updated {view['id']}.")


@connections.command("remove")
@click.argument("connection_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def remove(connection_id: str, as_json: bool) -> None:
    """Remove a connection, with its tokens and syncs."""
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        remove_connection(session, connection_id)
    out = {"id": connection_id, "removed": True}
    click.echo(json.dumps(out, indent=2) if as_json else f"removed {connection_id}.")
