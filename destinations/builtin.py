"""The built-in destinations: the record store and a connector action."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.pagination import extract
from spark_integrations.constants import QUEUE_CALLS, TASK_CALL
from spark_integrations.destinations.base import (
    DELIVER_CHANGES,
    DELIVER_NEW,
    Batch,
    Delivered,
    Destination,
    register_destination,
)
from spark_integrations.destinations.templates import compact_json, render
from spark_integrations.errors import NotFoundError, SkippableError, UsageError
from spark_integrations.store import Connection
from spark_integrations.store.records import upsert_records

__all__ = ["ActionDestination", "StoreDestination", "check_templates_fit", "params_for_record"]

log = logging.getLogger(__name__)


def _upsert(session: Session, batch: Batch) -> Any:
    stream = batch.stream
    replication = stream.replication_key
    return upsert_records(
        session,
        batch.sync_id,
        ((extract(r, stream.primary_key), r) for r in batch.records),
        version=None if replication is None else (lambda r: extract(r, replication)),
    )


@register_destination
class StoreDestination(Destination):
    """The fleet's record store: records upserted in the page's own transaction."""

    kind = "store"

    def deliver(self, session: Session, batch: Batch) -> Delivered:
        done = _upsert(session, batch)
        return Delivered(written=done.written, unchanged=done.unchanged + done.stale)


def params_for_record(
    action: Action, record: Mapping[str, Any], templates: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The params of one call made from one record.

    Each param a template is given for (``--with NAME=TEMPLATE``) is that template rendered
    from the record. The others: the record's fields the action takes, when they hold every
    param it needs; otherwise, for an action taking one text param (a message), the record as
    compact JSON text.

    Raises:
        SkippableError: the record cannot make a call of this action (a field a template
            names is missing, or a value the action refuses); the page goes on.
    """
    rendered = {name: render(template, record) for name, template in (templates or {}).items()}
    keys = [*action.params, *action.optional]
    picked = {k: record[k] for k in keys if k in record}
    picked.update(rendered)
    try:
        if all(k in picked for k in action.params):
            return action.validate(picked)
        if len(action.params) == 1 and next(iter(action.params.values())) is str:
            (name,) = action.params
            return action.validate({**rendered, name: compact_json(record)})
    except UsageError as exc:  # a value the action refuses
        raise SkippableError(str(exc)) from None
    raise SkippableError(
        f"records of this stream lack the params {action.name} needs ({', '.join(action.params)})."
    )


def check_templates_fit(action: Action, templates: Mapping[str, str]) -> None:
    """Refuse, in one sentence, a ``--with`` name the action does not take or whose param is
    not text (a template makes text)."""
    for name in templates:
        expected = action.params.get(name) or action.optional.get(name)
        if expected is None:
            known = ", ".join([*action.params, *action.optional]) or "none"
            raise UsageError(
                f"--with {name}: {action.name} takes no param {name!r}; it takes {known}."
            )
        types = expected if isinstance(expected, tuple) else (expected,)
        if str not in types:
            raise UsageError(
                f"--with {name}: the param {name!r} of {action.name} is not text, and a template "
                "makes text."
            )


@register_destination
class ActionDestination(Destination):
    """Each new or changed record becomes one ``integrations.call`` of a connector's action.

    The records are kept in the record store too, as the memory of what was delivered: a record
    is sent when it is new or its content changed (``--deliver changes``), or only when it is
    new, its key never stored for the sync before (``--deliver new``: a record changed later is
    stored, not sent). Each call's idempotency key is derived from the sync, the record's key
    and its content hash, so a page delivered again after a crash sends calls that the fleet
    (and a provider that honours idempotency keys) take for repeats.
    """

    kind = "action"
    param_names: ClassVar[frozenset[str] | None] = None  # the action's: check() checks them
    deliver_modes: ClassVar[tuple[str, ...]] = (DELIVER_CHANGES, DELIVER_NEW)

    def __init__(self, argument: str) -> None:
        super().__init__(argument)
        self.connection_id, _, self.action = argument.partition(":")

    @classmethod
    def parse(cls, argument: str) -> Destination:
        connection_id, sep, action = argument.partition(":")
        if not sep or not connection_id or not action or ":" in action:
            raise UsageError(
                "an action destination is written 'action:CONNECTION_ID:ACTION' "
                f"(got 'action:{argument}')."
            )
        return cls(argument)

    def resolve(self, session: Session) -> Action:
        conn = session.get(Connection, self.connection_id)
        if conn is None:
            raise NotFoundError(
                f"no connection {self.connection_id!r} for the destination; "
                "`connections list` shows them."
            )
        return get_connector(conn.provider).get_action(self.action)

    def check(self, session: Session) -> None:
        check_templates_fit(self.resolve(session), self.params)

    def params_for(self, action: Action, record: Mapping[str, Any]) -> dict[str, Any]:
        """The params of the call made from ``record`` (SkippableError: the record is skipped)."""
        return params_for_record(action, record, self.params)

    def idempotency_key(self, sync_id: str, key: str, digest: str, version: Any = None) -> str:
        """One key per (sync, record, content, replication value): the same version is never
        sent twice, and a record changed back to an earlier content is sent again."""
        text = f"{sync_id}|{key}|{digest}|{json.dumps(version, default=str)}"
        return "sync-" + hashlib.sha256(text.encode()).hexdigest()[:48]

    def deliver(self, session: Session, batch: Batch) -> Delivered:
        from celery import current_app

        action = self.resolve(session)
        done = _upsert(session, batch)
        to_send = done.written_keys
        if self.deliver_mode == DELIVER_NEW:
            # Keys this page inserted: the sync never delivered them (a page delivered again
            # after a lost commit inserts them again, and its calls are taken for repeats).
            new = set(done.new_keys)
            to_send = tuple(written for written in to_send if written[0] in new)
        if not to_send:
            return Delivered(written=done.written, unchanged=done.unchanged + done.stale)
        by_key = {_key(batch, r): r for r in batch.records}
        replication = batch.stream.replication_key
        # Every call is built before the first is sent: a record the action cannot take is
        # skipped (logged) instead of failing the page half sent.
        calls = []
        for key, digest in to_send:
            record = by_key[key]
            try:
                params = self.params_for(action, record)
            except SkippableError as exc:
                log.warning(
                    "sync %s: record %s not sent to %s: %s", batch.sync_id, key, self.spec, exc
                )
                continue
            version = None if replication is None else extract(record, replication)
            calls.append((params, self.idempotency_key(batch.sync_id, key, digest, version)))
        for params, idempotency_key in calls:
            current_app.send_task(
                TASK_CALL,
                kwargs={
                    "connection_id": self.connection_id,
                    "action": self.action,
                    "params": params,
                    "idempotency_key": idempotency_key,
                },
                queue=QUEUE_CALLS,
            )
        return Delivered(
            written=done.written, unchanged=done.unchanged + done.stale, sent=len(calls)
        )


def _key(batch: Batch, record: Mapping[str, Any]) -> str:
    from spark_integrations.store.records import record_key

    return record_key(extract(record, batch.stream.primary_key))
