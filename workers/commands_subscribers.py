"""``subscribers add|list|remove|enable|disable|test``: who hears of the fleet's events.

A subscriber is a URL, to which each event it wants is posted signed per Standard Webhooks, or a
spark workflow (``--spark CONNECTION_ID:WORKFLOW_ID``), run with the event as its input.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from spark_integrations.constants import EVENT_PING, EVENT_TYPES
from spark_integrations.errors import UsageError, WaitTimeoutError
from spark_integrations.workers.output import emit

__all__ = ["subscribers"]

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
ADD_HELP = f"""Add a subscriber: URL, or a spark workflow with --spark.

URL receives each event it subscribes to as a POST signed per Standard Webhooks (headers
webhook-id, webhook-timestamp, webhook-signature; body {{"type", "timestamp", "data"}}), retried
over about 28 hours until it answers 2xx; https:// only (plain http:// to loopback or a host in
SPARK_INTEGRATIONS_ALLOW_HTTP_HOSTS). The signing secret is made for you unless --secret gives
one (--secret - reads it from stdin); it is printed once.

--spark CONNECTION_ID:WORKFLOW_ID runs that workflow through the spark connection instead, with
the event (its id, type, timestamp and data, as JSON) as input, once per event.

--events names the event types ({", ".join(EVENT_TYPES)}), comma-separated or repeated;
a * matches any part (sync.*).
"""


@click.group()
def subscribers() -> None:
    """Subscribers of the fleet's events (outgoing webhooks)."""


def _read_secret(secret: str | None) -> str | None:
    if secret != "-":
        return secret
    line = sys.stdin.readline().strip()
    if not line:
        raise UsageError("--secret - read nothing from stdin.")
    return line


@subscribers.command("add", help=ADD_HELP)
@click.argument("url", required=False)
@click.option("--spark", "spark_target", metavar="CONNECTION_ID:WORKFLOW_ID")
@click.option("--events", "events", multiple=True, required=True, metavar="TYPE[,TYPE...]")
@click.option("--secret", help="The whsec_ signing secret (default: a new one); - reads stdin.")
@JSON_OPTION
def subscribers_add(
    url: str | None,
    spark_target: str | None,
    events: tuple[str, ...],
    secret: str | None,
    as_json: bool,
) -> None:
    from spark_integrations.webhooks.subscribers import (
        add_spark_subscriber,
        add_url_subscriber,
        new_secret,
        subscriber_view,
    )
    from spark_integrations.workers.runtime import prepare

    if bool(url) == bool(spark_target):
        raise UsageError("give a URL or --spark CONNECTION_ID:WORKFLOW_ID (one of them).")
    if spark_target and secret is not None:
        raise UsageError("--secret signs posts to a URL; a --spark subscriber takes none.")
    rt = prepare(redis=False)
    made = None
    with rt.session() as session:
        if spark_target:
            subscriber = add_spark_subscriber(session, target=spark_target, events=events)
        else:
            assert url is not None
            given = _read_secret(secret)
            made = given if given is not None else new_secret()
            subscriber = add_url_subscriber(
                session,
                rt.box,
                url=url,
                events=events,
                secret=made,
                http_hosts=rt.settings.allow_http_hosts,
            )
        view = subscriber_view(subscriber)
    where = view["url"] or f"spark workflow {view['workflow_id']} on {view['spark_connection_id']}"
    if as_json:
        emit({**view, "secret": made} if made is not None else view, True)
        return
    click.echo(f"subscriber {view['id']}: {', '.join(view['events'])} to {where}.")
    if made is not None:
        click.echo(made)
        click.echo(
            "this signing secret is shown once (receivers verify webhook-signature with it).",
            err=True,
        )


@subscribers.command("list")
@JSON_OPTION
def subscribers_list(as_json: bool) -> None:
    """List subscribers, oldest first, with their deliveries (never their secrets)."""
    from spark_integrations.webhooks.subscribers import (
        delivery_counts,
        list_subscribers,
        subscriber_view,
    )
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        counts = delivery_counts(session)
        rows = [subscriber_view(s, counts.get(s.id)) for s in list_subscribers(session)]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        where = row["url"] or f"spark:{row['spark_connection_id']}:{row['workflow_id']}"
        state = "" if row["enabled"] else " (disabled)"
        done = row["deliveries"]
        click.echo(
            f"{row['id']} {', '.join(row['events'])} -> {where}{state}: {done['delivered']} "
            f"delivered, {done['pending']} pending, {done['failed']} failed"
        )
    if not rows:
        click.echo("no subscribers; `subscribers add URL --events TYPE` adds one.")


@subscribers.command("remove")
@click.argument("subscriber_id")
def subscribers_remove(subscriber_id: str) -> None:
    """Remove a subscriber; its pending deliveries are dropped."""
    from spark_integrations.webhooks.subscribers import remove_subscriber
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        remove_subscriber(session, subscriber_id)
    click.echo(f"subscriber {subscriber_id} removed.")


def _enable(subscriber_id: str, enabled: bool) -> None:
    from spark_integrations.webhooks.subscribers import set_enabled
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    with rt.session() as session:
        set_enabled(session, subscriber_id, enabled)
    click.echo(f"subscriber {subscriber_id} {'enabled' if enabled else 'disabled'}.")


@subscribers.command("enable")
@click.argument("subscriber_id")
def subscribers_enable(subscriber_id: str) -> None:
    """Send a subscriber events again (after a 410 Gone disabled it, say)."""
    _enable(subscriber_id, True)


@subscribers.command("disable")
@click.argument("subscriber_id")
def subscribers_disable(subscriber_id: str) -> None:
    """Send a subscriber nothing until it is enabled; its pending deliveries fail."""
    _enable(subscriber_id, False)


def _delivery_state(rt: Any, delivery_id: str) -> dict[str, Any] | None:
    from spark_integrations.store.models_webhooks import OutboundDelivery

    with rt.session() as session:
        row = session.get(OutboundDelivery, delivery_id)
        if row is None or (row.status == "pending" and row.last_error is None):
            return None  # not tried yet, or its first attempt is under way
        return {"status": row.status, "attempts": row.attempts, "error": row.last_error}


@subscribers.command("test")
@click.argument("subscriber_id")
@click.option("--wait", is_flag=True, help="Wait for the first attempt and say how it went.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True)
@JSON_OPTION
def subscribers_test(subscriber_id: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Send a ping event to one subscriber (through a worker, like any event)."""
    from spark_integrations.webhooks.outbound import record_event, send_deliveries
    from spark_integrations.webhooks.subscribers import get_subscriber
    from spark_integrations.workers.runtime import prepare

    rt = prepare()
    with rt.session() as session:
        if not get_subscriber(session, subscriber_id).enabled:
            raise UsageError(f"subscriber {subscriber_id} is disabled; `subscribers enable` it.")
        ids = record_event(
            session, EVENT_PING, {"subscriber_id": subscriber_id}, only=subscriber_id
        )
    from spark_integrations.workers.app import app

    sent = send_deliveries(rt.settings.database_url, ids, app)
    answer: dict[str, Any] = {"delivery_id": ids[0], "queued": bool(sent)}
    if not wait:
        note = "" if sent else " (the broker did not take it; the sweep sends it)"
        emit(answer, as_json, f"ping queued as delivery {ids[0]}{note}.")
        return
    deadline = time.monotonic() + timeout
    while (state := _delivery_state(rt, ids[0])) is None:
        if time.monotonic() > deadline:
            raise WaitTimeoutError(
                f"delivery {ids[0]} was not tried within {timeout:g} s (is a worker consuming "
                "integrations.webhooks?)."
            )
        time.sleep(0.2)
    answer.update(state)
    ok = state["status"] == "delivered"
    emit(answer, as_json, "ping delivered." if ok else f"ping not delivered: {state['error']}")
    if not ok:
        sys.exit(1)
