"""The client: sends ``integrations.call`` and ``integrations.sync`` by name, as the contract
says, and turns their results and failures into typed objects and exceptions.

It is a thin layer over a Celery app, either one it builds from the fleet's broker and result
backend URLs, or the caller's own (which must use JSON for tasks and results, as the fleet does).
Tasks are sent with ``send_task`` by name on their contract queue, JSON only, so nothing of the
fleet is imported or needed here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from celery import states as celery_states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.exceptions import OperationalError

from spark_integrations_client.checks import (
    check_flag,
    check_id,
    check_idempotency_key,
    check_params,
    check_timeout,
)
from spark_integrations_client.errors import BrokerUnavailableError, ResultTimeoutError
from spark_integrations_client.failures import call_failure, sync_failure
from spark_integrations_client.names import (
    QUEUE_BACKFILLS,
    QUEUE_CALLS,
    QUEUE_SYNCS,
    TASK_CALL,
    TASK_SYNC,
)
from spark_integrations_client.results import (
    CallResult,
    SyncResult,
    SyncSkipped,
    call_result,
    sync_result,
)

__all__ = ["IntegrationsClient", "PendingCall", "PendingSync"]

#: The environment variables the fleet itself reads (CONTRACT.md), read by ``from_env``.
ENV_BROKER_URL = "SPARK_INTEGRATIONS_BROKER_URL"
ENV_RESULT_BACKEND = "SPARK_INTEGRATIONS_RESULT_BACKEND"
DEFAULT_CALL_TIMEOUT = 30.0
DEFAULT_SYNC_TIMEOUT = 300.0
_BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "amqp", "amqps")
_RESULT_SCHEMES = ("redis", "rediss", "redis+socket")


class _Pending:
    """A task sent to the fleet, whose result can be waited for (again, after a timeout)."""

    def __init__(self, result: Any) -> None:
        self._async = result

    @property
    def task_id(self) -> str:
        """The Celery task id: the fleet's history, metrics and dead letters name it."""
        return str(self._async.id)

    def ready(self) -> bool:
        """True once the task has finished (succeeded or failed)."""
        return bool(self._async.ready())

    def _outcome(self, timeout: object) -> tuple[bool, Any]:
        """(True, payload) for a success, (False, error) for a failure; waits ``timeout`` s."""
        seconds = check_timeout(timeout)
        try:
            # The fleet's own workers run the task, never the caller's pool: waiting from inside
            # a task of the caller's app (spark's worker) cannot deadlock, so Celery's guard
            # against it is lifted.
            value = self._async.get(timeout=seconds, propagate=False, disable_sync_subtasks=False)
        except CeleryTimeoutError:
            raise ResultTimeoutError(self.task_id, seconds or 0.0) from None
        if self._async.state == celery_states.SUCCESS:
            return True, value
        if isinstance(value, BaseException):
            return False, value
        return False, RuntimeError(f"task {self.task_id} ended in state {self._async.state}.")


class PendingCall(_Pending):
    """An ``integrations.call`` sent to the fleet."""

    def __init__(self, result: Any, *, connection_id: str = "", action: str = "") -> None:
        super().__init__(result)
        self.connection_id = connection_id
        self.action = action

    def result(self, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> CallResult:
        """Wait up to ``timeout`` seconds (None: without limit) for the call's result.

        Raises:
            CallFailedError: the call failed (UnknownConnectionError for an unknown id).
            ResultTimeoutError: no result in time; the call may still run.
        """
        ok, value = self._outcome(timeout)
        if not ok:
            raise call_failure(
                value, task_id=self.task_id, connection_id=self.connection_id, action=self.action
            )
        return call_result(value, task_id=self.task_id)


class PendingSync(_Pending):
    """An ``integrations.sync`` trigger sent to the fleet."""

    def __init__(self, result: Any, *, sync_id: str = "") -> None:
        super().__init__(result)
        self.sync_id = sync_id

    def result(self, timeout: float | None = DEFAULT_SYNC_TIMEOUT) -> SyncResult | SyncSkipped:
        """Wait up to ``timeout`` seconds (None: without limit) for the run's result.

        Raises:
            SyncFailedError: the run failed (UnknownSyncError for an unknown id).
            ResultTimeoutError: no result in time; the run may still go on.
        """
        ok, value = self._outcome(timeout)
        if not ok:
            raise sync_failure(value, task_id=self.task_id, sync_id=self.sync_id)
        return sync_result(value, sync_id=self.sync_id, task_id=self.task_id)


class IntegrationsClient:
    """Sends the fleet's tasks by contract.

    Args:
        broker_url: the fleet's broker (``SPARK_INTEGRATIONS_BROKER_URL``).
        result_backend: the fleet's result backend (``SPARK_INTEGRATIONS_RESULT_BACKEND``);
            by default the broker, which must then be Redis.
        app: a Celery app already on the fleet's broker and backend, instead of the URLs
            (it must serialise tasks and results as JSON); the client never closes it.
    """

    def __init__(
        self,
        broker_url: str | None = None,
        result_backend: str | None = None,
        *,
        app: Any = None,
    ) -> None:
        if app is not None:
            if broker_url is not None or result_backend is not None:
                raise ValueError("give either a Celery app or broker and backend URLs, not both.")
            _check_app(app)
            self.app = app
            self._owned = False
            return
        broker = _check_url("broker_url", broker_url, _BROKER_SCHEMES)
        if result_backend is None:
            if urlsplit(broker).scheme not in _RESULT_SCHEMES:
                raise ValueError(
                    "result_backend is required when the broker is not Redis "
                    "(the fleet keeps its results in Redis)."
                )
            result_backend = broker
        backend = _check_url("result_backend", result_backend, _RESULT_SCHEMES)
        self.app = Celery(
            "spark-integrations-client", broker=broker, backend=backend, set_as_current=False
        )
        self.app.conf.update(
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            result_accept_content=["json"],
            broker_connection_retry_on_startup=True,
        )
        self._owned = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IntegrationsClient:
        """A client on the broker and backend the fleet's own environment variables name."""
        env = os.environ if environ is None else environ
        broker = env.get(ENV_BROKER_URL)
        if not broker:
            raise ValueError(f"{ENV_BROKER_URL} is not set; it names the fleet's broker.")
        return cls(broker, env.get(ENV_RESULT_BACKEND) or None)

    # -- integrations.call ----------------------------------------------------------------

    def send_call(
        self,
        connection_id: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        task_id: str | None = None,
    ) -> PendingCall:
        """Send ``integrations.call`` and return at once; ``.result()`` waits for it.

        Raises:
            TypeError, ValueError: an argument the fleet would refuse (nothing is sent).
            BrokerUnavailableError: the broker did not take the task.
        """
        kwargs: dict[str, Any] = {
            "connection_id": check_id("connection_id", connection_id),
            "action": check_id("action", action),
            "params": check_params(params),
        }
        key = check_idempotency_key(idempotency_key)
        if key is not None:
            kwargs["idempotency_key"] = key
        sent = self._send(TASK_CALL, kwargs, QUEUE_CALLS, task_id)
        return PendingCall(sent, connection_id=connection_id, action=action)

    def call(
        self,
        connection_id: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        task_id: str | None = None,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ) -> CallResult:
        """Run ``action`` on the connection and wait up to ``timeout`` s for its result.

        With an ``idempotency_key`` the call's effect happens at most once, however often it is
        sent (within 24 hours); a repeat returns the first result with ``replayed`` True.

        Raises:
            TypeError, ValueError: an argument the fleet would refuse (nothing is sent).
            CallFailedError: the call failed (UnknownConnectionError for an unknown id).
            ResultTimeoutError: no result in time; the call may still run.
            BrokerUnavailableError: the broker did not take the task.
        """
        check_timeout(timeout)
        pending = self.send_call(
            connection_id, action, params, idempotency_key=idempotency_key, task_id=task_id
        )
        return pending.result(timeout)

    def pending_call(
        self, task_id: str, *, connection_id: str = "", action: str = ""
    ) -> PendingCall:
        """A call sent earlier (e.g. one whose wait timed out), to wait for its result again."""
        return PendingCall(
            self.app.AsyncResult(check_id("task_id", task_id)),
            connection_id=connection_id,
            action=action,
        )

    # -- integrations.sync ----------------------------------------------------------------

    def send_sync(
        self, sync_id: str, *, full_refresh: bool = False, task_id: str | None = None
    ) -> PendingSync:
        """Trigger a run of the sync and return at once; ``.result()`` waits for it.

        A full refresh goes to the backfills queue, so it never holds up incremental runs.
        """
        kwargs = {
            "sync_id": check_id("sync_id", sync_id),
            "full_refresh": check_flag("full_refresh", full_refresh),
        }
        queue = QUEUE_BACKFILLS if full_refresh else QUEUE_SYNCS
        return PendingSync(self._send(TASK_SYNC, kwargs, queue, task_id), sync_id=sync_id)

    def sync(
        self,
        sync_id: str,
        *,
        full_refresh: bool = False,
        task_id: str | None = None,
        timeout: float | None = DEFAULT_SYNC_TIMEOUT,
    ) -> SyncResult | SyncSkipped:
        """Run the sync and wait up to ``timeout`` s for the run's result.

        A trigger while a run of the sync is in progress answers :class:`SyncSkipped`.

        Raises:
            TypeError, ValueError: an argument the fleet would refuse (nothing is sent).
            SyncFailedError: the run failed (UnknownSyncError for an unknown id).
            ResultTimeoutError: no result in time; the run may still go on.
            BrokerUnavailableError: the broker did not take the task.
        """
        check_timeout(timeout)
        return self.send_sync(sync_id, full_refresh=full_refresh, task_id=task_id).result(timeout)

    def pending_sync(self, task_id: str, *, sync_id: str = "") -> PendingSync:
        """A sync trigger sent earlier, to wait for its result again."""
        return PendingSync(self.app.AsyncResult(check_id("task_id", task_id)), sync_id=sync_id)

    # -- plumbing -------------------------------------------------------------------------

    def _send(self, name: str, kwargs: dict[str, Any], queue: str, task_id: str | None) -> Any:
        options: dict[str, Any] = {"queue": queue, "serializer": "json"}
        if task_id is not None:
            options["task_id"] = check_id("task_id", task_id)
        try:
            return self.app.send_task(name, kwargs=kwargs, **options)
        except OperationalError as exc:
            raise BrokerUnavailableError(f"the broker did not take {name}: {exc}") from None

    def close(self) -> None:
        """Close the broker and result connections of the app the client built (a caller's own
        app is left open)."""
        if not self._owned:
            return
        try:
            # The Redis result backend keeps a pub/sub connection and a pool that app.close()
            # leaves open.
            backend = self.app.__dict__.get("backend")
            consumer = getattr(backend, "result_consumer", None)
            pubsub = getattr(consumer, "_pubsub", None)
            if pubsub is not None:
                pubsub.close()
            client = getattr(backend, "client", None)
            if client is not None:
                client.connection_pool.disconnect()
        finally:
            self.app.close()

    def __enter__(self) -> IntegrationsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _check_url(name: str, value: object, schemes: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a URL string, not {type(value).__name__}.")
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ValueError(f"{name} must be a URL whose scheme is one of {', '.join(schemes)}.")
    return value


def _check_app(app: Any) -> None:
    """Refuse an app that cannot speak to the fleet: JSON only, both ways."""
    if not callable(getattr(app, "send_task", None)) or getattr(app, "conf", None) is None:
        raise TypeError(f"app must be a Celery app, not {type(app).__name__}.")
    conf = app.conf
    accepted = conf.result_accept_content or conf.accept_content or ()
    reads_json = "json" in accepted or "application/json" in accepted
    if conf.result_serializer != "json" or not reads_json:
        raise ValueError(
            "the app must read results as JSON (result_serializer='json' and 'json' in "
            "result_accept_content): the fleet writes JSON results."
        )
