"""What a held webhook event sets off: the routes of its connection, else the streams its
connector declares for it, else nothing.

:func:`plan_event` answers a :class:`Plan`: the matching routes of the event's connection
(:mod:`webhooks.routes`), each one task to send (``integrations.sync``, or ``integrations.call``
with params rendered from the event's payload); when none matches, the connection's enabled
syncs of the streams its connector declares for the event
(:meth:`ConnectorDeclaration.refreshes_for`), narrowed to the syncs whose stream params equal
the declaration's templates rendered from the payload. A route that cannot run for this event
(its sync is paused, its template names a field the payload lacks, its action is gone) is
skipped, with why: retrying cannot help it.

A call carries the idempotency key ``webhook:{event_id}:{route_id}`` (``:replay-N`` after it for
the Nth ``webhooks replay``), so however often one processing of the event is retried or
redelivered, each route calls once.

The event's result once processed (:meth:`Plan.result`): ``routes`` (how many matched),
``runs`` (each task sent: kind, route or declared stream, its target, task id), ``refreshed``
(the declared streams), ``skipped`` (with ``reason``), ``replay``; ``{"routes": 0}`` when there
was nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_integrations.connectors import get_connector
from spark_integrations.constants import QUEUE_CALLS, QUEUE_SYNCS, TASK_CALL, TASK_SYNC
from spark_integrations.destinations.templates import render
from spark_integrations.errors import IntegrationError, SkippableError, UsageError
from spark_integrations.store import Connection, SyncDefinition, WebhookEvent
from spark_integrations.webhooks.routes import destination_of, matching_routes

__all__ = ["Plan", "Send", "idempotency_key", "plan_event"]


def idempotency_key(event_id: str, route_id: str, replay: int = 0) -> str:
    """The key of the call a route makes for an event (one per replay of the event)."""
    key = f"webhook:{event_id}:{route_id}"
    return key if not replay else f"{key}:replay-{replay}"


@dataclass(frozen=True)
class Send:
    """One task to send for the event; ``entry`` is what the result records of it."""

    task: str
    queue: str
    kwargs: dict[str, Any]
    entry: dict[str, Any]


@dataclass
class Plan:
    """What a held event sets off: ``routes`` matched, the tasks to send, what was skipped."""

    routes: int = 0
    sends: list[Send] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)

    def result(self, runs: list[dict[str, Any]], replay: int = 0) -> dict[str, Any]:
        """The event's result once the tasks went out (``runs``: their entries, task ids in)."""
        out: dict[str, Any] = {"routes": self.routes}
        if runs:
            out["runs"] = runs
        if self.refreshed:
            out["refreshed"] = self.refreshed
        if self.skipped:
            out["skipped"] = self.skipped
        if replay:
            out["replay"] = replay
        return out


def _record(payload: Any) -> Mapping[str, Any]:
    """What templates render from: the payload (a JSON object), or it under ``value``."""
    return payload if isinstance(payload, Mapping) else {"value": payload}


def _sync_send(sync: SyncDefinition, entry: dict[str, Any]) -> Send:
    return Send(TASK_SYNC, QUEUE_SYNCS, {"sync_id": sync.id}, {**entry, "sync_id": sync.id})


def plan_event(session: Session, event: WebhookEvent, replay: int = 0) -> Plan:
    """What ``event`` (held by the caller) sets off; see the module docstring."""
    plan = Plan()
    record = _record(event.payload)
    routes = matching_routes(session, event.connection_id, event.event_type)
    plan.routes = len(routes)
    for route in routes:
        entry: dict[str, Any] = {"route_id": route.id, "kind": route.kind}
        try:
            if route.kind == "sync":
                sync = session.get(SyncDefinition, route.sync_id)
                if sync is None or not sync.enabled:
                    raise SkippableError(f"sync {route.sync_id} is paused.")
                plan.sends.append(_sync_send(sync, entry))
                continue
            destination = destination_of(route)
            action = destination.resolve(session)
            params = destination.params_for(action, record)
        except (SkippableError, UsageError) as exc:
            # The route cannot run for this event (a field its template names is missing, its
            # action is gone from the connector): nothing to retry; the result says why.
            plan.skipped.append({**entry, "reason": str(exc)})
            continue
        target = route.target_connection_id
        key = idempotency_key(event.id, route.id, replay)
        kwargs = {
            "connection_id": target,
            "action": action.name,
            "params": params,
            "idempotency_key": key,
        }
        entry.update(connection_id=target, action=action.name, idempotency_key=key)
        if route.kind == "spark":
            entry["workflow_id"] = route.workflow_id
        plan.sends.append(Send(TASK_CALL, QUEUE_CALLS, kwargs, entry))
    if not routes:
        _plan_declared(session, event, record, plan)
    return plan


def _plan_declared(
    session: Session, event: WebhookEvent, record: Mapping[str, Any], plan: Plan
) -> None:
    """The connection's enabled syncs of the streams its connector declares for the event."""
    connection = session.get(Connection, event.connection_id)
    try:
        connector = get_connector(connection.provider if connection else event.provider)
    except IntegrationError:
        return  # the connector is not installed here: it declares nothing
    refreshes = connector.refreshes_for(event.event_type)
    if not refreshes:
        return
    syncs = session.scalars(
        select(SyncDefinition)
        .where(SyncDefinition.connection_id == event.connection_id, SyncDefinition.enabled)
        .order_by(SyncDefinition.created_at, SyncDefinition.id)
    ).all()
    chosen: dict[str, Send] = {}
    for refresh in refreshes:
        plan.refreshed.append(refresh.stream)
        wanted = _wanted_params(refresh.params, record)
        for sync in syncs:
            if sync.stream != refresh.stream or sync.id in chosen:
                continue
            given = dict(sync.params or {})
            if all(_text(given.get(k)) == v for k, v in wanted.items()):
                chosen[sync.id] = _sync_send(sync, {"stream": sync.stream, "kind": "sync"})
    plan.sends.extend(chosen.values())
    plan.refreshed = list(dict.fromkeys(plan.refreshed))


def _wanted_params(
    params: tuple[tuple[str, str], ...], record: Mapping[str, Any]
) -> dict[str, str]:
    """The stream params a declared refresh narrows to; one the payload cannot fill narrows
    nothing (a refresh too many costs a run that finds nothing new)."""
    wanted: dict[str, str] = {}
    for name, template in params:
        try:
            wanted[name] = render(template, record)
        except IntegrationError:
            continue
    return wanted


def _text(value: Any) -> str | None:
    """A sync's stored stream param as the text a template renders."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
