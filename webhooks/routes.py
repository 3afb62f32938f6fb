"""Routes of incoming webhook events: where a connection's events of a type go.

A route (:class:`store.models_webhooks.WebhookRoute`, managed with ``spark-integrations webhooks
route add|list|remove``) sends a connection's events whose type matches its pattern
(:func:`connectors.webhook_events.event_matches`: ``fnmatch``, ``issues`` also matching
``issues.opened``, ``*`` every event) to one of:

* ``sync``: the sync runs now (``integrations.sync``; a run in progress answers skipped);
* ``action``: one ``integrations.call`` of an action of a connection, its params rendered from
  the event's payload by the templates given with ``--with NAME=TEMPLATE`` (the grammar of
  ``syncs add --with``, :mod:`destinations.templates`); a param with no template is taken from
  the payload's field of that name, or, for an action taking one text param, is the payload as
  compact JSON (:func:`destinations.builtin.params_for_record`);
* ``spark``: one run of a spark workflow (``run_workflow`` of a spark connection), its input the
  ``--with input=TEMPLATE`` rendered from the payload, or the payload as compact JSON.

Everything a route names is checked when it is added, each refusal one sentence; the action and
spark kinds reuse the action and spark destinations' checks, so a route and a sync accept the
same templates. Routes of a connection go with it (and a sync's routes with the sync).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.webhook_events import MAX_PATTERN_LENGTH, event_matches
from spark_integrations.destinations.builtin import ActionDestination
from spark_integrations.destinations.spark import SPARK_PROVIDER, SparkDestination
from spark_integrations.errors import NotFoundError, UsageError
from spark_integrations.store.connections import get_connection
from spark_integrations.store.models_webhooks import ROUTE_KINDS, WebhookRoute
from spark_integrations.store.syncs import get_sync
from spark_integrations.store.types import iso_z

__all__ = [
    "ROUTE_KINDS",
    "add_route",
    "check_pattern",
    "destination_of",
    "get_route",
    "list_routes",
    "matching_routes",
    "remove_route",
    "route_view",
]

# What makes two routes of a connection the same route.
_IDENTITY = ("event_type", "kind", "sync_id", "target_connection_id", "action", "workflow_id",
             "params")  # fmt: skip
# Printable text: no control character and no lone surrogate (the store holds it as it is).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_pattern(pattern: str) -> str:
    """``pattern`` when it can be an event type pattern, else UsageError in one sentence."""
    if (
        not isinstance(pattern, str)
        or not pattern.strip()
        or pattern != pattern.strip()
        or len(pattern) > MAX_PATTERN_LENGTH
        or _UNPRINTABLE.search(pattern)
    ):
        raise UsageError(
            f"EVENT_TYPE must be an event type or a pattern of them (like issues, issues.opened, "
            f"payment_intent.* or *) of 1 to {MAX_PATTERN_LENGTH} printable characters without "
            "surrounding spaces."
        )
    return pattern


def route_view(route: WebhookRoute) -> dict[str, Any]:
    """A route as ``webhooks route add|list --json`` shows it."""
    return {
        "id": route.id,
        "connection_id": route.connection_id,
        "event_type": route.event_type,
        "kind": route.kind,
        "sync_id": route.sync_id,
        "target_connection_id": route.target_connection_id,
        "action": route.action,
        "workflow_id": route.workflow_id,
        "params": dict(route.params or {}),
        "created_at": iso_z(route.created_at),
    }


def _destination(
    kind: str, target_connection_id: str | None, name: str | None, params: Mapping[str, str]
) -> ActionDestination:
    """The action or spark destination a route of that kind calls, with its templates."""
    if kind == "spark":
        destination: ActionDestination = SparkDestination(f"{target_connection_id}:{name}")
    elif kind == "action":
        destination = ActionDestination(f"{target_connection_id}:{name}")
    else:
        raise UsageError(f"a {kind} route calls no action.")
    destination.use_params(params)
    return destination


def destination_of(route: WebhookRoute) -> ActionDestination:
    """The action or spark destination an action or spark route calls (its templates with it)."""
    name = route.workflow_id if route.kind == "spark" else route.action
    return _destination(route.kind, route.target_connection_id, name, route.params or {})


def _check_target(
    session: Session, kind: str, target_connection_id: str, name: str, templates: Mapping[str, str]
) -> None:
    """The target connection, its action (or that it is a spark connection) and the templates,
    checked as ``syncs add --destination`` checks them."""
    target = get_connection(session, target_connection_id)
    if kind == "spark":
        if target.provider != SPARK_PROVIDER:
            raise UsageError(
                f"connection {target.id} is a {target.provider} connection; --spark needs a "
                "spark connection."
            )
        unknown = sorted(set(templates) - {"input"})
        if unknown:
            raise UsageError(
                f"--spark takes only --with input=TEMPLATE; --with {unknown[0]} is not one."
            )
    _destination(kind, target.id, name, templates).check(session)


def add_route(
    session: Session,
    *,
    connection_id: str,
    event_type: str,
    kind: str,
    sync_id: str | None = None,
    target_connection_id: str | None = None,
    name: str | None = None,
    templates: Mapping[str, str] | None = None,
) -> WebhookRoute:
    """Store a route of ``connection_id``'s events matching ``event_type``.

    ``kind`` ``sync`` names ``sync_id``; ``action`` names ``target_connection_id`` and the
    action ``name``; ``spark`` the spark connection ``target_connection_id`` and the workflow
    id ``name``. ``templates`` (NAME -> template) go with action and spark routes.

    Raises:
        NotFoundError: a connection or the sync does not exist.
        UsageError: anything else the route names cannot be used (one sentence).
    """
    pattern = check_pattern(event_type)
    conn = get_connection(session, connection_id)
    if get_connector(conn.provider).webhook_scheme is None:
        raise UsageError(
            f"connection {conn.id} is a {conn.provider} connection, which receives no webhooks; "
            "routes are for connections whose connector has a webhook scheme."
        )
    given = dict(templates or {})
    values: dict[str, Any] = {"connection_id": conn.id, "event_type": pattern, "kind": kind}
    if kind == "sync":
        if given:
            raise UsageError("--with goes with --action or --spark; a sync route takes none.")
        values["sync_id"] = get_sync(session, sync_id or "").id
    elif kind in ("action", "spark"):
        if not target_connection_id or not name:
            raise UsageError(f"a {kind} route needs a connection and a name.")
        _check_target(session, kind, target_connection_id, name, given)
        values.update(
            target_connection_id=target_connection_id,
            params=given,
            **({"action": name} if kind == "action" else {"workflow_id": name}),
        )
    else:
        raise UsageError(f"a route's kind is one of {', '.join(ROUTE_KINDS)}, not {kind!r}.")

    def identity(route: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(route.get(k) for k in _IDENTITY)

    wanted = identity({"sync_id": None, "params": {}, **values})
    for existing in list_routes(session, conn.id):
        if identity(route_view(existing)) == wanted:
            raise UsageError(f"the same route exists already: {existing.id}.")
    route = WebhookRoute(**values)
    session.add(route)
    session.flush()
    return route


def get_route(session: Session, route_id: str) -> WebhookRoute:
    """The route of that id, or NotFoundError."""
    route = session.get(WebhookRoute, route_id) if route_id else None
    if route is None:
        raise NotFoundError(f"no webhook route {route_id!r}; `webhooks route list` shows them.")
    return route


def list_routes(session: Session, connection_id: str | None = None) -> Sequence[WebhookRoute]:
    """Every route (of one connection), oldest first."""
    stmt = select(WebhookRoute).order_by(WebhookRoute.created_at, WebhookRoute.id)
    if connection_id is not None:
        stmt = stmt.where(WebhookRoute.connection_id == connection_id)
    return session.scalars(stmt).all()


def remove_route(session: Session, route_id: str) -> None:
    """Delete one route (NotFoundError when there is none)."""
    session.delete(get_route(session, route_id))
    session.flush()


def matching_routes(
    session: Session, connection_id: str, event_type: str | None
) -> list[WebhookRoute]:
    """The routes of ``connection_id`` whose pattern matches ``event_type``, oldest first."""
    return [
        route
        for route in list_routes(session, connection_id)
        if event_matches(route.event_type, event_type)
    ]
