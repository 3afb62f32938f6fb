"""The ``spark-integrations`` command line (CONTRACT.md, "Command line").

Exit status: 0 success, 1 the operation failed, 2 usage error. Errors are one sentence on stderr,
never a traceback for a user's mistake; ``--json`` prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from sqlalchemy.exc import OperationalError

from spark_integrations import logs
from spark_integrations.constants import ALL_QUEUES, TASK_PING
from spark_integrations.errors import IntegrationError, NotFoundError, UsageError, WaitTimeoutError
from spark_integrations.workers import (
    commands_calls,
    commands_connections,
    commands_demo,
    commands_expose,
    commands_gateway,
    commands_keys,
    commands_manifest,
    commands_sandbox,
    commands_scaffold,
    commands_subscribers,
    commands_syncs,
    commands_webhooks,
)
from spark_integrations.workers.output import emit

__all__ = ["cli", "main"]

PROG = "spark-integrations"
#: Beat's scheduler: the static schedule plus the syncs defined in the store.
STORE_SCHEDULER = "spark_integrations.workers.scheduler:StoreScheduler"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="automagik-spark-integrations", prog_name=PROG)
def cli() -> None:
    """The integration worker fleet of automagik-spark."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def doctor(as_json: bool) -> None:
    """Check configuration, broker, Redis, store, secret keys and connector plugins."""
    from spark_integrations.workers.doctor import run_checks

    checks = run_checks()
    ok = all(c.ok for c in checks)
    if as_json:
        emit({"ok": ok, "checks": [c.as_dict() for c in checks]}, True)
    else:
        for c in checks:
            label = "FAIL" if not c.ok else "WARN" if c.warning else "ok  "
            click.echo(f"{label} {c.name}: {c.detail}")
        failed = [c.name for c in checks if not c.ok]
        click.echo("all checks passed." if ok else f"failed: {', '.join(failed)}.")
    if not ok:
        sys.exit(1)


@cli.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the store to the newest migration."""
    from spark_integrations.migrations import runner
    from spark_integrations.settings import hide_password
    from spark_integrations.store import store_error
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False, store=False)
    url = rt.settings.database_url
    try:
        revision = runner.upgrade(url)
    except OperationalError as exc:
        raise store_error(url, exc) from None
    click.echo(f"store at migration {revision} ({hide_password(url)}).")


def _celery(argv: list[str]) -> NoReturn:
    from spark_integrations.tasks.context import current_settings
    from spark_integrations.workers.app import app

    if argv[0] in ("worker", "beat") and current_settings().operations.log_format == "json":
        argv = ["--quiet", *argv]  # no banner of text lines among the JSON ones
    app.start(argv)
    sys.exit(0)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--queues",
    default=",".join(ALL_QUEUES),
    show_default=True,
    help="Comma-separated queues to consume.",
)
@click.option("--concurrency", type=click.IntRange(min=1), help="Pool processes (default: CPUs).")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, concurrency: int | None, extra: tuple[str, ...]) -> None:
    """Run a worker. Arguments after `--` go to `celery worker` unchanged."""
    from spark_integrations.workers.runtime import prepare

    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in ALL_QUEUES]
    if not names or unknown:
        raise UsageError(
            f"unknown queue {unknown[0]!r}; the fleet's queues are {', '.join(ALL_QUEUES)}."
            if unknown
            else "--queues names no queue."
        )
    prepare()
    argv = ["worker", f"--queues={','.join(names)}", "--loglevel=INFO"]
    argv.append(f"--hostname=fleet-{os.getpid()}@%h")
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    _celery([*argv, *extra])


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def beat(extra: tuple[str, ...]) -> None:
    """Run the scheduler. Arguments after `--` go to `celery beat` unchanged.

    Beat sends the fleet's periodic jobs and the syncs defined in the store, which it reads
    every second. Several beats may run at once: each due period of a sync is claimed in the
    store by one of them. A --scheduler among the extra arguments overrides the fleet's.
    """
    from spark_integrations.workers.runtime import prepare

    rt = prepare()
    # The schedule's state file lives in HOME, which server mode does not otherwise need.
    rt.settings.home.mkdir(parents=True, exist_ok=True)
    pidfile = rt.settings.home / "beat.pid" if rt.settings.embedded else None
    argv = ["beat", "--loglevel=INFO", f"--scheduler={STORE_SCHEDULER}"]
    if pidfile is not None:
        # One beat per embedded home: a second one refuses to start instead of doubling runs.
        argv.append(f"--pidfile={pidfile}")
    _celery([*argv, *extra])


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def flower(port: int, host: str, extra: tuple[str, ...]) -> None:
    """Run Flower, the monitoring UI (authentication required in server mode)."""
    from spark_integrations.workers.runtime import prepare

    rt = prepare(store=False)
    argv = ["flower", f"--port={port}", f"--address={host}"]
    auth = rt.settings.flower_basic_auth
    if auth:
        argv.append(f"--basic-auth={auth}")
    elif not rt.settings.embedded:
        raise UsageError(
            "Flower shows task arguments and results: server mode needs "
            "SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH=user:password."
        )
    from spark_integrations.workers.app import app

    # Flower takes no tasks: it needs kombu's own transport, whose URL scheme its broker page
    # knows (the fleet's app names the reliable-fetch transport; see spark_integrations.broker).
    app.conf.broker_url = rt.settings.broker_url
    _celery([*argv, *extra])


@cli.command()
def down() -> None:
    """Stop the embedded Redis server (its queue is kept on disk)."""
    from spark_integrations import settings
    from spark_integrations.workers.embedded import EmbeddedRedis

    s = settings.load()
    if not s.embedded:
        click.echo("server mode: there is no embedded Redis to stop.")
        return
    stopped = EmbeddedRedis(s.home, s.redis_socket).stop()
    click.echo("embedded Redis stopped." if stopped else "embedded Redis was not running.")


@cli.command()
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def ping(timeout: float, as_json: bool) -> None:
    """Send a task through the broker to a worker and wait for its answer."""
    import time

    from celery.exceptions import TimeoutError as CeleryTimeout

    from spark_integrations.workers.runtime import prepare

    prepare(store=False)
    from spark_integrations.workers.app import app

    started = time.monotonic()
    result = app.send_task(TASK_PING, kwargs={"echo": "ping"})
    try:
        answer = result.get(timeout=timeout)
    except CeleryTimeout:
        raise WaitTimeoutError(
            f"no worker answered within {timeout:g} s; is one running "
            "(spark-integrations worker) on the integrations.maintenance queue?"
        ) from None
    elapsed = time.monotonic() - started
    emit(
        {**answer, "task_id": result.id, "round_trip_s": round(elapsed, 3)},
        as_json,
        f"pong from {answer['worker']} in {elapsed * 1000:.0f} ms (task {result.id}).",
    )


@cli.group()
def connectors() -> None:
    """The connectors installed (entry-point group spark_integrations.connectors)."""


@connectors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def connectors_list(as_json: bool) -> None:
    """List connectors with their actions, streams, config keys and secret names."""
    from spark_integrations.connectors import discover_connectors

    reg = discover_connectors()
    rows = [cls.describe() for cls in reg.connectors.values()]
    if as_json:
        emit(rows, True)
    else:

        def shown(item: dict[str, Any]) -> str:
            """name(required, optional?) of an action or stream; a stream's order unless it
            is oldest first."""
            names = [p["name"] + ("" if p["required"] else "?") for p in item["params"]]
            order = item.get("order", "oldest_first")
            note = "" if order == "oldest_first" else f" [{order.replace('_', ' ')}]"
            return str(item["name"]) + (f"({', '.join(names)})" if names else "") + note

        for row in rows:
            click.echo(
                f"{row['name']}: auth {', '.join(row['auth_kinds']) or '-'}; "
                f"actions {', '.join(map(shown, row['actions'])) or '-'}; "
                f"streams {', '.join(map(shown, row['streams'])) or '-'}; "
                f"config {', '.join(row['config_keys'])}; secrets {', '.join(row['secret_keys'])}"
            )
    for broken in reg.broken:
        click.echo(
            f"{PROG}: plugin {broken.name} ({broken.value}) is broken: {broken.error}", err=True
        )


cli.add_command(commands_connections.connections)
cli.add_command(commands_calls.call)
cli.add_command(commands_calls.dlq)
cli.add_command(commands_sandbox.sandbox_command, name="sandbox")
cli.add_command(commands_gateway.gateway)
cli.add_command(commands_gateway.connect)
cli.add_command(commands_keys.keys)
cli.add_command(commands_syncs.syncs)
cli.add_command(commands_syncs.records)
cli.add_command(commands_demo.demo)
cli.add_command(commands_expose.expose)
cli.add_command(commands_subscribers.subscribers)
cli.add_command(commands_webhooks.webhooks)
connectors.add_command(commands_scaffold.connectors_new)
connectors.add_command(commands_manifest.connectors_schema)
connectors.add_command(commands_manifest.connectors_check)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the command line, turning every expected error into one sentence."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        logs.configure_cli(os.environ)
        cli.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(f"{PROG}: aborted.", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        click.echo(f"{PROG}: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"{PROG}: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except NotFoundError as exc:
        click.echo(f"{PROG}: {exc}", err=True)
        sys.exit(1)
    except UsageError as exc:
        click.echo(f"{PROG}: {exc}", err=True)
        sys.exit(2)
    except IntegrationError as exc:
        click.echo(f"{PROG}: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except (OSError, json.JSONDecodeError) as exc:
        click.echo(f"{PROG}: {exc}", err=True)
        sys.exit(1)
