"""The client distribution (client/): what it sends, to which queue, and what it refuses first.

A real Celery app on kombu's in-memory transport and result store stands in for the fleet's
broker and Redis: each test reads the message the client really published from its queue, and
writes the result a worker would write with the backend's own calls. Nothing is mocked; no
broker is needed.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from spark_integrations_client import (
    BrokerUnavailableError,
    CallFailedError,
    CallResult,
    IntegrationsClient,
    ResultTimeoutError,
    SyncResult,
    SyncSkipped,
    UnknownConnectionError,
    UnknownSyncError,
)
from spark_integrations_client.names import QUEUE_BACKFILLS, QUEUE_CALLS, QUEUE_SYNCS

ALL = (QUEUE_CALLS, QUEUE_SYNCS, QUEUE_BACKFILLS)


def memory_app(**conf: Any) -> Celery:
    app = Celery("client-test", broker="memory://", backend="cache+memory://", set_as_current=False)
    settings: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
    }
    app.conf.update({**settings, **conf})
    return app


def drain(app: Celery, queue: str) -> list[Any]:
    """Every message waiting in ``queue``, taken off it: (task name, kwargs, content type)."""
    taken = []
    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while True:
                try:
                    message = simple.get(block=False)
                except simple.Empty:
                    break
                message.ack()
                taken.append((message.headers["task"], message.payload[1], message.content_type))
        finally:
            simple.close()
    return taken


@pytest.fixture
def app() -> Iterator[Celery]:
    made = memory_app()
    for queue in ALL:  # the in-memory broker is shared by the process
        drain(made, queue)
    yield made
    made.close()


@pytest.fixture
def client(app: Celery) -> IntegrationsClient:
    return IntegrationsClient(app=app)


def test_a_call_is_sent_by_name_on_the_calls_queue_as_json(
    app: Celery, client: IntegrationsClient
) -> None:
    pending = client.send_call("c1", "create_message", {"text": "hi"}, idempotency_key="k-1")
    assert drain(app, QUEUE_CALLS) == [
        (
            "integrations.call",
            {
                "connection_id": "c1",
                "action": "create_message",
                "params": {"text": "hi"},
                "idempotency_key": "k-1",
            },
            "application/json",
        )
    ]
    assert drain(app, QUEUE_SYNCS) == []
    assert pending.connection_id == "c1" and pending.action == "create_message"
    assert not pending.ready()


def test_a_call_without_params_or_key_sends_the_contract_defaults(
    app: Celery, client: IntegrationsClient
) -> None:
    client.send_call("c1", "list_items", task_id="my-task-1")
    ((_, kwargs, _),) = drain(app, QUEUE_CALLS)
    assert kwargs == {"connection_id": "c1", "action": "list_items", "params": {}}
    assert client.pending_call("my-task-1").task_id == "my-task-1"


def test_syncs_go_to_their_queue_and_full_refreshes_to_backfills(
    app: Celery, client: IntegrationsClient
) -> None:
    client.send_sync("s1")
    client.send_sync("s2", full_refresh=True)
    assert drain(app, QUEUE_SYNCS) == [
        ("integrations.sync", {"sync_id": "s1", "full_refresh": False}, "application/json")
    ]
    assert drain(app, QUEUE_BACKFILLS) == [
        ("integrations.sync", {"sync_id": "s2", "full_refresh": True}, "application/json")
    ]


class Odd:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "words"),
    [
        ((5, "a"), {}, TypeError, "connection_id must be a string, not int"),
        (("c", None), {}, TypeError, "action must be a string, not NoneType"),
        (("", "a"), {}, ValueError, "connection_id must be a non-empty string"),
        (("c\x00", "a"), {}, ValueError, "printable"),
        (("c" * 201, "a"), {}, ValueError, "at most 200"),
        (("c", "a", ["text"]), {}, TypeError, "params must be a dict, not list"),
        (("c", "a", {"t": Odd()}), {}, TypeError, "params must hold only JSON values"),
        (("c", "a", {"t": math.nan}), {}, TypeError, "params must hold only JSON values"),
        (("c", "a", {1: "x"}), {}, TypeError, "text keys"),
        (("c", "a", {"t": (1, 2)}), {}, TypeError, "lists, not tuples"),
        (("c", "a"), {"idempotency_key": 7}, TypeError, "idempotency_key must be a string"),
        (("c", "a"), {"idempotency_key": "a\nb"}, ValueError, "printable ASCII"),
        (("c", "a"), {"idempotency_key": "k" * 256}, ValueError, "1 to 255"),
        (("c", "a"), {"task_id": ""}, ValueError, "task_id must be a non-empty string"),
        (("c", "a"), {"timeout": 0}, ValueError, "timeout must be a positive"),
        (("c", "a"), {"timeout": math.inf}, ValueError, "finite"),
        (("c", "a"), {"timeout": "5"}, TypeError, "timeout must be a number"),
        (("c", "a"), {"timeout": True}, TypeError, "timeout must be a number"),
    ],
)
def test_bad_call_arguments_are_refused_before_anything_is_sent(
    app: Celery,
    client: IntegrationsClient,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error, match=words) as raised:
        client.call(*args, **kwargs)
    text = str(raised.value)
    assert text.endswith(".") and "\n" not in text, text
    assert drain(app, QUEUE_CALLS) == []


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "words"),
    [
        ((None,), {}, TypeError, "sync_id must be a string"),
        (("s",), {"full_refresh": "yes"}, TypeError, "full_refresh must be True or False"),
        (("s",), {"full_refresh": 1}, TypeError, "full_refresh must be True or False"),
        (("s",), {"timeout": -1}, ValueError, "timeout must be a positive"),
    ],
)
def test_bad_sync_arguments_are_refused_before_anything_is_sent(
    app: Celery,
    client: IntegrationsClient,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error, match=words):
        client.sync(*args, **kwargs)
    assert [drain(app, queue) for queue in ALL] == [[], [], []]


def test_a_call_result_comes_back_typed(app: Celery, client: IntegrationsClient) -> None:
    pending = client.send_call("c1", "create_message", {"text": "hi"})
    app.backend.mark_as_done(
        pending.task_id, {"ok": True, "data": {"id": "m1", "text": "hi"}, "attempts": 2}
    )
    result = pending.result(timeout=10)
    assert result == CallResult(
        data={"id": "m1", "text": "hi"}, attempts=2, task_id=pending.task_id
    )
    assert result.ok and pending.ready()


def test_a_failed_call_raises_with_the_fleets_sentence(
    app: Celery, client: IntegrationsClient
) -> None:
    pending = client.send_call("c1", "create_message", {"text": "hi"})
    failure = app.backend.exception_to_python(
        {
            "exc_type": "CallFailedError",
            "exc_module": "spark_integrations.errors",
            "exc_message": ["gave up after 5 attempts: 503 [sandbox: status 503, not applied]"],
        }
    )
    app.backend.mark_as_failure(pending.task_id, failure)
    with pytest.raises(CallFailedError) as raised:
        pending.result(timeout=10)
    error = raised.value
    assert type(error) is CallFailedError
    assert error.reason == "gave up after 5 attempts: 503 [sandbox: status 503, not applied]"
    assert (error.task_id, error.connection_id, error.action) == (
        pending.task_id,
        "c1",
        "create_message",
    )
    assert error.error_type == "CallFailedError"


def test_an_unknown_connection_is_its_own_error(app: Celery, client: IntegrationsClient) -> None:
    pending = client.send_call("nope", "create_message", {"text": "hi"})
    failure = app.backend.exception_to_python(
        {
            "exc_type": "CallFailedError",
            "exc_module": "spark_integrations.errors",
            "exc_message": ["no connection has the id 'nope'."],
        }
    )
    app.backend.mark_as_failure(pending.task_id, failure)
    with pytest.raises(UnknownConnectionError, match="no connection has the id 'nope'"):
        pending.result(timeout=10)


def test_a_revoked_call_is_a_failed_call(app: Celery, client: IntegrationsClient) -> None:
    pending = client.send_call("c1", "create_message", {"text": "hi"})
    app.backend.mark_as_revoked(pending.task_id, "revoked by an operator")
    with pytest.raises(CallFailedError) as raised:
        pending.result(timeout=10)
    assert raised.value.task_id == pending.task_id
    assert raised.value.error_type == "TaskRevokedError"


def test_no_result_in_time_names_the_task_which_can_be_waited_for_again(
    app: Celery, client: IntegrationsClient
) -> None:
    pending = client.send_call("c1", "create_message", {"text": "hi"})
    with pytest.raises(ResultTimeoutError) as raised:
        pending.result(timeout=0.2)
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.task_id == pending.task_id
    assert "did not finish within 0.2 s" in str(raised.value)
    app.backend.mark_as_done(pending.task_id, {"ok": True, "data": None, "attempts": 0})
    again = client.pending_call(raised.value.task_id, connection_id="c1")
    assert again.result(timeout=10).data is None


def test_a_sync_answers_a_run_or_a_skip(app: Celery, client: IntegrationsClient) -> None:
    ran = client.send_sync("s1")
    app.backend.mark_as_done(
        ran.task_id,
        {
            "ok": True,
            "sync_id": "s1",
            "run_id": "r1",
            "records": 3,
            "pages": 1,
            "cursor": "2024-01-01T00:00:00Z",
            "full_refresh": False,
        },
    )
    assert ran.result(timeout=10) == SyncResult(
        sync_id="s1",
        run_id="r1",
        records=3,
        pages=1,
        cursor="2024-01-01T00:00:00Z",
        task_id=ran.task_id,
        extra={"full_refresh": False},
    )
    busy = client.send_sync("s1")
    reason = "run r1 of sync s1 is in progress."
    app.backend.mark_as_done(
        busy.task_id,
        {"ok": True, "skipped": True, "sync_id": "s1", "run_id": "r1", "reason": reason},
    )
    skipped = busy.result(timeout=10)
    assert skipped == SyncSkipped(sync_id="s1", reason=reason, run_id="r1", task_id=busy.task_id)
    assert skipped.skipped and skipped.ok


def test_an_unknown_sync_is_its_own_error(app: Celery, client: IntegrationsClient) -> None:
    pending = client.send_sync("nope")
    failure = app.backend.exception_to_python(
        {"exc_type": "UsageError", "exc_module": None, "exc_message": ["no sync 'nope'."]}
    )
    app.backend.mark_as_failure(pending.task_id, failure)
    with pytest.raises(UnknownSyncError) as raised:
        pending.result(timeout=10)
    assert raised.value.sync_id == "nope" and raised.value.error_type == "UsageError"


def test_a_broker_that_cannot_be_reached_is_one_error_and_no_retry_loop() -> None:
    app = memory_app(
        broker_url="redis://127.0.0.1:1/0", task_publish_retry=False, broker_connection_timeout=0.5
    )
    try:
        with pytest.raises(BrokerUnavailableError, match="the broker did not take integrations"):
            IntegrationsClient(app=app).send_call("c1", "create_message", {"text": "hi"})
    finally:
        app.close()


def test_the_client_builds_its_own_app_from_the_fleets_urls() -> None:
    with IntegrationsClient("redis://127.0.0.1:6379/3") as client:
        conf = client.app.conf
        assert conf.broker_url == "redis://127.0.0.1:6379/3"
        assert conf.result_backend == "redis://127.0.0.1:6379/3"  # the contract's default
        assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
        assert list(conf.accept_content) == ["json"]
    with IntegrationsClient("amqp://guest@127.0.0.1//", "redis://127.0.0.1:6379/4") as client:
        assert client.app.conf.result_backend == "redis://127.0.0.1:6379/4"


def test_from_env_reads_the_fleets_own_variables() -> None:
    env = {
        "SPARK_INTEGRATIONS_BROKER_URL": "amqp://guest@127.0.0.1//",
        "SPARK_INTEGRATIONS_RESULT_BACKEND": "redis://127.0.0.1:6379/5",
    }
    with IntegrationsClient.from_env(env) as client:
        assert client.app.conf.broker_url == "amqp://guest@127.0.0.1//"
        assert client.app.conf.result_backend == "redis://127.0.0.1:6379/5"
    with pytest.raises(ValueError, match="SPARK_INTEGRATIONS_BROKER_URL is not set"):
        IntegrationsClient.from_env({})


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "words"),
    [
        ((), {}, TypeError, "broker_url must be a URL string, not NoneType"),
        (("http://x",), {}, ValueError, "broker_url must be a URL whose scheme is one of"),
        (("amqp://x//",), {}, ValueError, "result_backend is required when the broker"),
        (("amqp://x//", "amqp://y//"), {}, ValueError, "result_backend must be a URL"),
        (("redis://x",), {"app": "app"}, ValueError, "either a Celery app or broker"),
        ((), {"app": object()}, TypeError, "app must be a Celery app, not object"),
        ((), {"app": "pickle"}, ValueError, "the app must read results as JSON"),
    ],
)
def test_a_client_that_could_not_speak_to_the_fleet_is_refused(
    app: Celery, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    if kwargs.get("app") == "app":
        kwargs["app"] = app
    if kwargs.get("app") == "pickle":
        kwargs["app"] = memory_app(result_serializer="pickle", result_accept_content=["pickle"])
    try:
        with pytest.raises(error, match=words):
            IntegrationsClient(*args, **kwargs)
    finally:
        if isinstance(kwargs.get("app"), Celery):
            kwargs["app"].close()


def test_a_callers_app_is_left_open(app: Celery) -> None:
    with IntegrationsClient(app=app) as client:
        client.send_call("c1", "ping", task_id=f"t-{uuid.uuid4().hex}")
        pool = app.pool
    # The app's connection pool is still the one it had (app.close() would have dropped it).
    assert app._pool is pool
    assert len(drain(app, QUEUE_CALLS)) == 1


def test_the_clients_own_app_is_closed() -> None:
    client = IntegrationsClient("redis://127.0.0.1:6379/3")
    assert client.app.pool is not None
    client.close()
    assert client.app._pool is None
