"""The gateway's ``/spark`` surface: the fleet as an Automagik Agents source of automagik-spark.

Spark 0.3.7 knows three kinds of workflow source; this is the Automagik Agents one because it
is the smallest surface spark uses: ``GET /health`` (``{"status": "healthy"}``), ``GET /`` (a
name and a version), ``GET /api/v1/agents`` (a list of ``{"name", "type", "description"}``) and
``POST /api/v1/agent/{name}/run`` (``{"message_content", ...}``). A LangFlow source needs
folders, flows and component graphs; an Automagik Hive listing is larger still.

Each agent is an exposure (``expose action`` / ``expose sync``). A run enqueues
``integrations.call`` or ``integrations.sync``, then waits for its result up to
``SPARK_INTEGRATIONS_SPARK_WAIT`` seconds (4 by default; spark's client gives up after 5):

* done: 200 ``{"message": <the result as compact JSON>, "session_id", "success": true}``,
  which spark records as a completed task with the message as its output;
* failed: 422 (bad input or params) or 502 (the call failed) with ``{"detail": one sentence}``,
  which spark records as a failed task;
* still running: 200 with ``task ID is STATE; ...`` as the message. Never an error: spark would
  record a failure (and a scheduled run whose error names a timeout is run again by spark),
  while the fleet goes on with the task. Its outcome is in the fleet's history.

The wait counts from the request's arrival, publishing included, and holds no thread: each
look at the result is one short read in a thread. How spark's input becomes params is in
:mod:`gateway.spark_inputs`.

Every request needs ``x-api-key``: the key ``expose key`` printed, compared by digest (see
:mod:`store.exposures`). The key is never logged: the gateway logs no headers, and uvicorn's
access log is off.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import anyio
from celery import Celery, states
from celery.app.backends import by_url
from celery.backends.redis import RedisBackend
from celery.result import AsyncResult
from prometheus_client import Counter
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from spark_integrations.connectors import get_connector
from spark_integrations.constants import QUEUE_CALLS, QUEUE_SYNCS, TASK_CALL, TASK_SYNC
from spark_integrations.errors import NotFoundError, StoreError, UsageError
from spark_integrations.gateway.pages import json_answer
from spark_integrations.gateway.spark_inputs import call_params
from spark_integrations.settings import Settings
from spark_integrations.store.connections import get_connection
from spark_integrations.store.exposures import check_spark_key, get_exposure, list_exposures

__all__ = ["MAX_BODY", "POLL_SECONDS", "SparkRefusal", "SparkSource"]

logger = logging.getLogger("gateway")

SessionFactory = Callable[[], AbstractContextManager[Session]]

#: Largest run body accepted (spark sends one short message).
MAX_BODY = 1 << 20
#: Seconds between looks at a task's result while a run waits.
POLL_SECONDS = 0.05
#: Seconds a Redis broker may take to answer one command of a publish before it counts as down.
BROKER_SOCKET_TIMEOUT = 2.0
NO_KEY = (
    "no key for spark has been issued: run `spark-integrations expose key` and register the "
    "fleet in spark with that key."
)
WRONG_KEY = (
    "the x-api-key header is missing or is not the fleet's key for spark "
    "(`spark-integrations expose key` issues a new one)."
)
STORE_DOWN = "the fleet's store cannot be reached; try again soon."
BROKER_DOWN = "the fleet's broker cannot be reached, so nothing was queued; try again soon."


class _PolledRedisBackend(RedisBackend):  # type: ignore[misc]
    """Celery's Redis result backend, read by polling the result's key.

    The stock backend subscribes (Redis pub/sub) to every task it sends, for ``get()``; a
    gateway that polls instead would leave those subscriptions unread. Reads are plain GETs
    through a connection pool, safe from any thread.
    """

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Subscribe to nothing: results are polled."""


class _PollingClient(Celery):  # type: ignore[misc]
    """A Celery client whose one result backend (:class:`_PolledRedisBackend`) is shared by
    the gateway's threads; Celery would build one per thread, each with its own pool."""

    _shared_backend: _PolledRedisBackend | None = None
    _backend_lock = threading.Lock()

    @property
    def backend(self) -> _PolledRedisBackend:
        with self._backend_lock:
            if self._shared_backend is None:
                _, url = by_url(self.conf.result_backend, self.loader)
                self._shared_backend = _PolledRedisBackend(app=self, url=url)
            return self._shared_backend


class SparkRefusal(Exception):
    """Raised when a /spark request is answered with an error status and a ``detail``."""

    def __init__(self, status: int, detail: str, outcome: str = "refused") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.outcome = outcome


class SparkSource:
    """The /spark endpoints over one store and broker."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        runs: Counter,
        version: str,
        *,
        celery: Callable[[], Celery] | None = None,
    ) -> None:
        """Bind the surface to the fleet.

        Args:
            settings: the wait, the broker and the result backend.
            sessions: opens one store transaction.
            runs: the counter of runs, by kind and outcome.
            version: the fleet's version, for spark's listing of sources.
            celery: builds the client app that sends tasks (default: one over the settings).
        """
        self.settings = settings
        self.sessions = sessions
        self.runs = runs
        self.version = version
        self._make_celery = celery or self._client_app
        self._celery: Celery | None = None
        self._lock = threading.Lock()

    def _client_app(self) -> Celery:
        """A client of the fleet's broker and result backend, as spark builds one: JSON only."""
        s = self.settings
        app = _PollingClient(
            "spark-integrations-gateway", broker=s.broker_url, backend=s.result_backend
        )
        transport: dict[str, Any] = (
            {"confirm_publish": True}
            if s.broker_is_amqp
            else {
                "visibility_timeout": s.visibility_timeout,
                # A Redis that took the connection but stops answering (paused, or a network
                # cut after connecting) would otherwise hold a publishing thread for good.
                "socket_timeout": BROKER_SOCKET_TIMEOUT,
                "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
            }
        )
        app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_accept_content=["json"],
            broker_connection_retry_on_startup=True,
            # A broker that does not answer is a 503 within about a second: spark gives up
            # after 5 s, and waiting longer would only hold a thread of the gateway.
            broker_connection_timeout=1.0,
            task_publish_retry_policy={
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.2,
            },
            broker_transport_options=transport,
            result_backend_transport_options={"visibility_timeout": s.visibility_timeout},
        )
        return app

    def celery(self) -> Celery:
        """The client app, built on first use."""
        with self._lock:
            if self._celery is None:
                self._celery = self._make_celery()
            return self._celery

    # --- the endpoints ------------------------------------------------------------------------

    def health(self, request: Request) -> Response:
        return self._answer(request, lambda: {
            "status": "healthy",
            "timestamp": datetime.now(UTC).isoformat(),
            "environment": "spark-integrations",
            "version": self.version,
        })  # fmt: skip

    def root(self, request: Request) -> Response:
        return self._answer(request, lambda: {
            "name": "spark-integrations",
            "version": self.version,
            "description": "The integration fleet's exposed actions and syncs, as agents.",
        })  # fmt: skip

    def agents(self, request: Request) -> Response:
        def listing() -> list[dict[str, Any]]:
            with self.sessions() as session:
                return [
                    {"name": e.name, "type": e.kind, "description": e.description}
                    for e in list_exposures(session)
                ]

        return self._answer(request, listing)

    async def run(self, request: Request) -> Response:
        # The wait is counted from here, so that publishing (and a thread to do it in) is part
        # of it: spark gives up 5 s after it sent the request, not after the task was queued.
        arrived = time.monotonic()
        chunks: list[bytes] = []
        size = 0
        try:
            # Read at most MAX_BODY bytes (plus one chunk); the key is checked after, in a thread.
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    break
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it; nothing was queued
        name = str(request.path_params["name"])
        key = request.headers.get("x-api-key", "")
        kind = "unknown"
        try:
            kind, task, kwargs = await run_in_threadpool(self._task_of, key, name, b"".join(chunks))
            result = await run_in_threadpool(self._send, task, kwargs)
            answer, outcome = await self._wait(task, result, arrived + self.settings.spark_wait)
        except SparkRefusal as refusal:
            self.runs.labels(kind=kind, outcome=refusal.outcome).inc()
            return _refused(refusal)
        except StoreError as exc:
            logger.error("spark source: %s", exc)
            self.runs.labels(kind=kind, outcome="refused").inc()
            return _refused(SparkRefusal(503, STORE_DOWN))
        self.runs.labels(kind=kind, outcome=outcome).inc()
        return answer

    # --- how they answer -----------------------------------------------------------------------

    def _answer(self, request: Request, make: Callable[[], Any]) -> Response:
        try:
            with self.sessions() as session:
                _authorise(session, request.headers.get("x-api-key", ""))
            return json_answer(make())
        except SparkRefusal as refusal:
            return _refused(refusal)
        except StoreError as exc:
            logger.error("spark source: %s", exc)
            return _refused(SparkRefusal(503, STORE_DOWN))

    def _task_of(self, key: str, name: str, body: bytes) -> tuple[str, str, dict[str, Any]]:
        """The exposure's kind, and the task and kwargs a run of it sends."""
        with self.sessions() as session:
            _authorise(session, key)
            if len(body) > MAX_BODY:
                raise SparkRefusal(413, f"the run's body is over {MAX_BODY} bytes.")
            message = _message_of(body)
            try:
                exposure = get_exposure(session, name)
            except NotFoundError as exc:
                raise SparkRefusal(404, str(exc)) from None
            if exposure.kind == "sync":
                return "sync", TASK_SYNC, {"sync_id": exposure.sync_id}
            try:
                connection = get_connection(session, str(exposure.connection_id))
                action = get_connector(connection.provider).get_action(exposure.action)
                params = call_params(action, dict(exposure.params or {}), message)
            except NotFoundError as exc:
                raise SparkRefusal(404, str(exc)) from None
            except UsageError as exc:
                raise SparkRefusal(422, str(exc)) from None
        return (
            "action",
            TASK_CALL,
            {
                "connection_id": exposure.connection_id,
                "action": exposure.action,
                "params": params,
            },
        )

    def _send(self, task: str, kwargs: dict[str, Any]) -> AsyncResult:
        """Queue the task (in a thread: publishing blocks), or a 503 refusal."""
        queue = QUEUE_SYNCS if task == TASK_SYNC else QUEUE_CALLS
        try:
            return self.celery().send_task(task, kwargs=kwargs, queue=queue)
        except Exception as exc:  # kombu's and redis' errors alike: nothing was queued
            logger.error("spark source: sending %s failed (%s)", task, type(exc).__name__)
            raise SparkRefusal(503, BROKER_DOWN) from None

    async def _wait(self, task: str, result: AsyncResult, deadline: float) -> tuple[Response, str]:
        """Poll the result until it is ready or ``deadline`` (monotonic) passes.

        Each look is one GET of the result backend in a thread; between looks the request
        waits on the event loop, holding no thread (a slow task must not take one of the
        gateway's threads for the whole wait).
        """
        while True:
            try:
                done, state, value = await run_in_threadpool(_look, result)
            except Exception as exc:  # the result backend failed: the task is queued all the same
                logger.warning(
                    "spark source: no result of task %s (%s)", result.id, type(exc).__name__
                )
                return _still_running(result.id, "unknown"), "waited"
            if done:
                break
            if time.monotonic() >= deadline:
                return _still_running(result.id, state.lower()), "waited"
            await _pause(POLL_SECONDS)
        if state == states.SUCCESS:
            message = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
            return json_answer(
                {"message": message, "session_id": result.id, "task_id": result.id,
                 "success": True}
            ), "completed"  # fmt: skip
        status = 422 if isinstance(value, UsageError) else 502
        detail = str(value).strip() or type(value).__name__
        what = "sync" if task == TASK_SYNC else "call"
        raise SparkRefusal(status, f"task {result.id}: the {what} failed: {detail}", "failed")


def _look(result: AsyncResult) -> tuple[bool, str, Any]:
    """One read of a task's state: whether it is ready, the state as Celery names it, and the
    value when ready (a ready state is cached by the AsyncResult: no second GET)."""
    state = str(result.state)
    done = state in states.READY_STATES
    return done, state, result.result if done else None


async def _pause(seconds: float) -> None:
    """Wait between two looks at a result, on the event loop."""
    await anyio.sleep(seconds)


def _authorise(session: Session, key: str) -> None:
    """Nothing when ``key`` is the fleet's key for spark, else a 401 refusal."""
    matched = check_spark_key(session, key)
    if matched is None:
        raise SparkRefusal(401, NO_KEY)
    if not matched:
        raise SparkRefusal(401, WRONG_KEY)


def _message_of(body: bytes) -> str:
    """The run's ``message_content``, or a 422 refusal."""
    try:
        data = json.loads(body) if body else {}
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        raise SparkRefusal(422, "the run's body is not JSON.") from None
    if not isinstance(data, dict):
        raise SparkRefusal(422, "the run's body must be a JSON object with message_content.")
    message = data.get("message_content", "")
    if not isinstance(message, str):
        raise SparkRefusal(422, "message_content must be text.")
    return message


def _still_running(task_id: str, state: str) -> Response:
    return json_answer({
        "message": f"task {task_id} is {state}; its outcome will be in the fleet's history "
        "(dlq list, metrics)",
        "session_id": task_id,
        "task_id": task_id,
        "success": True,
    })  # fmt: skip


def _refused(refusal: SparkRefusal) -> JSONResponse:
    return json_answer({"detail": refusal.detail}, refusal.status)
