"""The contract's task results as typed, frozen objects, and how a payload becomes one.

``integrations.call`` answers ``{"ok": true, "data": ..., "attempts": int}``: a replay of an
idempotent call adds ``"replayed": true`` (and ``attempts`` 0), a call whose outcome the fleet
found at the provider instead of sending it again adds ``"found": true``.
``integrations.sync`` answers ``{"ok": true, "sync_id", "run_id", "records", "pages",
"cursor"}``, or ``{"ok": true, "skipped": true, "reason": ...}`` when a run of the sync is in
progress. Keys beyond the contract's are kept in ``extra``, so a newer fleet never breaks an
older client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spark_integrations_client.errors import UnexpectedResultError

__all__ = ["CallResult", "SyncResult", "SyncSkipped", "call_result", "sync_result"]

_CALL_KEYS = frozenset({"ok", "data", "attempts", "replayed", "found"})
_SYNC_KEYS = frozenset({"ok", "sync_id", "run_id", "records", "pages", "cursor"})
_SKIP_KEYS = frozenset({"ok", "skipped", "reason", "sync_id", "run_id"})


@dataclass(frozen=True)
class CallResult:
    """The result of one ``integrations.call``.

    Attributes:
        data: what the action returned (the provider's answer, as JSON values).
        attempts: requests sent to the provider for this call (0 for a replay).
        replayed: True when an earlier call with the same idempotency key answered it.
        found: True when the fleet found the call's effect at the provider (a lost answer)
            instead of sending it again.
        task_id: the Celery task id of the call.
        extra: keys of the result beyond the contract's.
    """

    data: Any
    attempts: int
    replayed: bool = False
    found: bool = False
    task_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Always True: a failed call raises instead."""
        return True


@dataclass(frozen=True)
class SyncResult:
    """The result of one finished run of ``integrations.sync``.

    Attributes:
        sync_id: the sync that ran.
        run_id: the run's id (``syncs status`` lists it).
        records: records new or changed in that run.
        pages: pages read.
        cursor: the sync's cursor after the run (the stream's replication value, or None).
        task_id: the Celery task id of the trigger.
        extra: keys of the result beyond the contract's (the fleet adds ``full_refresh``,
            ``retries``, ``deferred``, ``resumed``, ``duration_s``).
    """

    sync_id: str
    run_id: str
    records: int
    pages: int
    cursor: Any = None
    task_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Always True: a failed run raises instead."""
        return True

    @property
    def skipped(self) -> bool:
        """False: this run happened (see :class:`SyncSkipped`)."""
        return False


@dataclass(frozen=True)
class SyncSkipped:
    """A trigger of ``integrations.sync`` that did nothing because a run is in progress.

    Attributes:
        sync_id: the sync asked for.
        reason: the fleet's sentence, naming the run in progress.
        run_id: the run in progress, when the fleet names it.
        task_id: the Celery task id of the trigger.
        extra: keys of the result beyond the contract's.
    """

    sync_id: str
    reason: str
    run_id: str | None = None
    task_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Always True: a skip is an answer, not a failure."""
        return True

    @property
    def skipped(self) -> bool:
        """True: nothing ran for this trigger."""
        return True


def call_result(payload: Any, *, task_id: str = "") -> CallResult:
    """The :class:`CallResult` of an ``integrations.call`` result payload."""
    body = _ok_mapping(payload, "integrations.call")
    if "data" not in body:
        raise UnexpectedResultError("the result of integrations.call has no 'data'.")
    return CallResult(
        data=body["data"],
        attempts=_count(body, "attempts", "integrations.call"),
        replayed=body.get("replayed") is True,
        found=body.get("found") is True,
        task_id=task_id,
        extra=_extra(body, _CALL_KEYS),
    )


def sync_result(payload: Any, *, sync_id: str, task_id: str = "") -> SyncResult | SyncSkipped:
    """The :class:`SyncResult` (or :class:`SyncSkipped`) of an ``integrations.sync`` payload;
    ``sync_id`` is the one asked for, used when a skip does not name it."""
    body = _ok_mapping(payload, "integrations.sync")
    if body.get("skipped") is True:
        reason = body.get("reason")
        run_id = body.get("run_id")
        return SyncSkipped(
            sync_id=_text(body.get("sync_id")) or sync_id,
            reason=reason if isinstance(reason, str) else "a run of the sync is in progress.",
            run_id=run_id if isinstance(run_id, str) else None,
            task_id=task_id,
            extra=_extra(body, _SKIP_KEYS),
        )
    for key in ("sync_id", "run_id"):
        if not isinstance(body.get(key), str):
            raise UnexpectedResultError(f"the result of integrations.sync has no text {key!r}.")
    return SyncResult(
        sync_id=body["sync_id"],
        run_id=body["run_id"],
        records=_count(body, "records", "integrations.sync"),
        pages=_count(body, "pages", "integrations.sync"),
        cursor=body.get("cursor"),
        task_id=task_id,
        extra=_extra(body, _SYNC_KEYS),
    )


def _ok_mapping(payload: Any, task: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise UnexpectedResultError(
            f"the result of {task} is a {type(payload).__name__}, not a JSON object."
        )
    if payload.get("ok") is not True:
        raise UnexpectedResultError(f"the result of {task} does not say ok: true.")
    return payload


def _count(body: Mapping[str, Any], key: str, task: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnexpectedResultError(f"the result of {task} has no whole number {key!r}.")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _extra(body: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in known}
