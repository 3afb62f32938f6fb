"""``spark-integrations gateway`` and ``spark-integrations connect``.

``connect`` starts an OAuth connect flow (:mod:`gateway.flows`) and prints its signed link; it
then waits for the gateway to end the flow, polling the store, so it works wherever the gateway
runs as long as both share the store. ``--url-only`` prints the link and exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import click

from spark_integrations.constants import DEFAULT_PUBLIC_URL
from spark_integrations.errors import AuthenticationError
from spark_integrations.workers.output import emit

if TYPE_CHECKING:
    from spark_integrations.gateway.flows import ConnectFlows
    from spark_integrations.gateway.health import Preparation
    from spark_integrations.workers.runtime import Runtime

__all__ = ["connect", "gateway"]

POLL_INTERVAL = 0.5
_DEFAULT_HOST, _, _DEFAULT_PORT = DEFAULT_PUBLIC_URL.removeprefix("http://").partition(":")


@click.command()
@click.option("--host", default=_DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=int(_DEFAULT_PORT),
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Serving processes sharing the port (webhook intake scales with them).",
)
def gateway(host: str, port: int, workers: int) -> None:
    """Run the HTTP gateway: health, metrics, webhooks and the OAuth callback."""
    from spark_integrations.gateway.server import serve
    from spark_integrations.workers.runtime import prepare

    # Settings only: the gateway serves while the store or the broker is unreachable, and
    # brings them up (embedded Redis, migrations) in the background (gateway_preparation).
    rt = prepare(redis=False, store=False)
    serve(rt.settings, host, port, gateway_preparation(rt), workers)


def gateway_preparation(rt: Runtime) -> Preparation:
    """What the gateway brings up before its checks pass.

    Embedded mode: the embedded Redis (``/readyz`` checks the broker the gateway hands work
    to), and the store migrated to the newest revision. A migration that fails (the store
    cannot be opened, or is held locked past the busy timeout) does not stop the gateway: it
    serves, ``/readyz`` answers 503 and webhooks 503 (nothing can be stored), the failure is
    logged, and the migration is tried again every few seconds. Server mode: the store must be
    at the newest migration (``spark-integrations db upgrade`` is the operator's, or a
    migration job's): until it is, the same.
    """
    from spark_integrations.gateway.health import Preparation
    from spark_integrations.workers.runtime import check_store

    steps: list[tuple[str, Callable[[], object]]] = []
    if rt.settings.embedded:
        steps.append(("broker", rt.embedded_redis.ensure_running))
    steps.append(("store", lambda: check_store(rt.settings)))
    return Preparation(steps)


@click.command()
@click.argument("connection_id")
@click.option("--url-only", is_flag=True, help="Print the link and exit without waiting.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=900.0,
    show_default=True,
    help="Seconds to wait for the authorisation.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def connect(connection_id: str, url_only: bool, timeout: float, as_json: bool) -> None:
    """Authorise an OAuth connection: print a signed link, then wait for the callback."""
    from spark_integrations.gateway.flows import ConnectFlows
    from spark_integrations.gateway.links import Signer
    from spark_integrations.workers.runtime import prepare

    rt = prepare(redis=False)
    flows = ConnectFlows(
        rt.session, rt.box, Signer(rt.settings.secret_keys), rt.settings.public_url
    )
    started = flows.start(connection_id)
    if url_only:
        emit({"connection_id": connection_id, "url": started.url}, as_json, started.url)
        return
    if as_json:
        click.echo(f"open this link to authorise the connection: {started.url}", err=True)
    else:
        click.echo(started.url)
    click.echo(
        f"waiting for the authorisation of {started.connection_name} (the link is valid until "
        f"{started.expires_at:%H:%M:%S} UTC; the gateway must be running)...",
        err=True,
    )
    try:
        status, error = _wait(flows, started.flow_id, timeout, started.expires_at)
    except KeyboardInterrupt:
        # The printed link must not stay usable once nobody waits for it.
        flows.abandon(started.flow_id, "connect was interrupted.")
        raise
    if status == "timed_out" and not flows.abandon(started.flow_id, error or "timed out."):
        # The flow ended between the last look and now: its outcome wins over the timeout.
        status, error = _current(flows, started.flow_id)
    result = {"connection_id": connection_id, "status": status, "url": started.url}
    if status == "succeeded":
        emit(
            {**result, "status": "active"},
            as_json,
            f"connection {started.connection_name} ({connection_id}) is connected and active.",
        )
        return
    if as_json:
        emit({**result, "error": error}, True)
    raise AuthenticationError(
        f"connection {started.connection_name} was not authorised: "
        f"{(error or 'the flow failed.').rstrip('.')}."
    )


def _current(flows: ConnectFlows, flow_id: str) -> tuple[str, str | None]:
    found = flows.status(flow_id)
    if found is None:
        return "failed", "the connection was removed."
    return found


def _wait(
    flows: ConnectFlows, flow_id: str, timeout: float, link_expires_at: datetime
) -> tuple[str, str | None]:
    """Poll the flow until it ends or ``timeout`` passes (then ``timed_out``)."""
    from spark_integrations.gateway.flows import STATE_TTL
    from spark_integrations.store.types import utcnow

    deadline = time.monotonic() + timeout
    while True:
        status, error = _current(flows, flow_id)
        if status in ("succeeded", "failed"):
            return status, error
        if status == "issued" and utcnow() >= link_expires_at:
            return "timed_out", "the link expired before it was opened."
        if status == "authorizing" and utcnow() >= link_expires_at + STATE_TTL:
            return "timed_out", "the provider did not send the person back in time."
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timed_out", f"no authorisation arrived within {timeout:g} s."
        time.sleep(min(POLL_INTERVAL, remaining))
