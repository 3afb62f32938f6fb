"""The /spark surface: the key, the listing, and a run's answers (done, failed, still running).

Tasks go through a real broker and result backend (this machine's Redis) to a Celery worker in
a thread of the test process, whose stand-in ``integrations.call`` and ``integrations.sync``
answer by what they are sent: the gateway's side is what is tested here; the fleet's real
workers and the real spark are in tests/integration/test_spark_source.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from spark_integrations.errors import CallFailedError, StoreError, UsageError
from spark_integrations.gateway import create_app, spark_source
from spark_integrations.settings import Settings
from spark_integrations.store import SyncDefinition, session_scope
from spark_integrations.store.exposures import add_exposure, issue_spark_key
from tests.unit.gateway.conftest import PUBLIC_URL, new_connection

pytestmark = pytest.mark.server

RUN = "/spark/api/v1/agent/{}/run"


class StubFleet:
    """What the stand-in tasks were sent, and the event a slow one waits for."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.syncs: list[str] = []
        self.release = threading.Event()


@pytest.fixture
def stub() -> StubFleet:
    return StubFleet()


@pytest.fixture
def celery_app(redis_url: str, stub: StubFleet) -> Iterator[Celery]:
    app = Celery("stub-fleet", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", accept_content=["json"], result_accept_content=["json"])
    # The fleet's own tasks, imported by another test of this process, are shared tasks: they
    # join every app when it is finalized and would take these names first. Finalize now,
    # drop them, and register the stand-ins in their place.
    app.finalize()
    for name in ("integrations.call", "integrations.sync"):
        app.tasks.pop(name, None)

    @app.task(name="integrations.call", shared=False)
    def call(
        connection_id: str, action: str, params: dict[str, Any], idempotency_key: Any = None
    ) -> dict[str, Any]:
        stub.calls.append({"connection_id": connection_id, "action": action, "params": params})
        text = params.get("text")
        if text == "slow":
            stub.release.wait(60)
        if text == "fail":
            raise CallFailedError("the provider answered 500 (boom).")
        if text == "refuse":
            raise UsageError("the connection is disabled.")
        return {"ok": True, "data": {"echo": params}, "attempts": 1}

    @app.task(name="integrations.sync", shared=False)
    def sync(sync_id: str, full_refresh: bool = False) -> dict[str, Any]:
        stub.syncs.append(sync_id)
        return {"ok": True, "sync_id": sync_id, "run_id": "r1", "records": 3, "pages": 1}

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=["integrations.calls", "integrations.syncs"],
    ):
        yield app
    stub.release.set()
    app.close()


def make_client(s: Settings, celery_app: Celery | None = None, **changes: Any) -> TestClient:
    app = create_app(
        dataclasses.replace(s, **changes), celery=None if celery_app is None else lambda: celery_app
    )
    return TestClient(app, base_url=PUBLIC_URL)


def close_client(client: TestClient) -> None:
    """Close the broker and result backend connections of the gateway's client app."""
    app = client.app.state.spark.celery()  # type: ignore[attr-defined]
    app.backend.client.connection_pool.disconnect()
    app.close()


@pytest.fixture
def key(gateway_settings: Settings) -> str:
    with session_scope(gateway_settings.database_url) as session:
        return issue_spark_key(session)


@pytest.fixture
def exposed(gateway_settings: Settings) -> dict[str, str]:
    """A sandbox connection's create_message and get_message (id fixed), and a sync."""
    s = gateway_settings
    cid = new_connection(s)
    with session_scope(s.database_url) as session:
        sync = SyncDefinition(connection_id=cid, stream="items")
        session.add(sync)
        session.flush()
        add_exposure(session, name="send", description="sends", connection_id=cid,
                     action="create_message")  # fmt: skip
        add_exposure(session, name="get", description="gets", connection_id=cid,
                     action="get_message", params={"id": "m1"})  # fmt: skip
        add_exposure(session, name="items", description="syncs", sync_id=sync.id)
        return {"connection_id": cid, "sync_id": sync.id}


def run(client: TestClient, key: str, name: str, message: Any) -> Any:
    return client.post(
        RUN.format(name),
        headers={"x-api-key": key},
        json={"message_content": message, "session_name": "s", "user_id": "u"},
    )


def test_without_a_key_issued_every_request_says_to_run_expose_key(
    gateway_settings: Settings,
) -> None:
    client = make_client(gateway_settings)
    for answer in (
        client.get("/spark/health", headers={"x-api-key": "anything"}),
        client.get("/spark/"),
        client.get("/spark/api/v1/agents"),
        client.post(RUN.format("send"), json={"message_content": "hi"}),
    ):
        assert answer.status_code == 401
        assert "spark-integrations expose key" in answer.json()["detail"]


def test_the_key_is_checked_and_a_new_key_replaces_the_old(
    gateway_settings: Settings, key: str
) -> None:
    client = make_client(gateway_settings)
    for headers in ({}, {"x-api-key": key + "x"}, {"x-api-key": ""}, {"X-Api-Key": key[:-1]}):
        answer = client.get("/spark/health", headers=headers)
        assert answer.status_code == 401 and "x-api-key" in answer.json()["detail"]
    health = client.get("/spark/health", headers={"X-API-Key": key})
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    with session_scope(gateway_settings.database_url) as session:
        newer = issue_spark_key(session)
    assert client.get("/spark/health", headers={"x-api-key": key}).status_code == 401
    assert client.get("/spark/health", headers={"x-api-key": newer}).status_code == 200


def test_root_and_the_listing_of_exposures(
    gateway_settings: Settings, key: str, exposed: dict[str, str]
) -> None:
    client = make_client(gateway_settings)
    for path in ("/spark", "/spark/"):
        root = client.get(path, headers={"x-api-key": key}, follow_redirects=False)
        assert root.status_code == 200
        assert set(root.json()) == {"name", "version", "description"}
    agents = client.get("/spark/api/v1/agents", headers={"x-api-key": key}).json()
    assert agents == [
        {"name": "get", "type": "action", "description": "gets"},
        {"name": "items", "type": "sync", "description": "syncs"},
        {"name": "send", "type": "action", "description": "sends"},
    ]


def test_a_run_sends_the_call_and_answers_its_result(
    gateway_settings: Settings, key: str, exposed: dict[str, str], celery_app: Celery,
    stub: StubFleet, redis_url: str, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    # The gateway's own client app, on the broker and backend the stand-in worker uses.
    client = make_client(gateway_settings, broker_url=redis_url, result_backend=redis_url)
    request.addfinalizer(lambda: close_client(client))
    answer = run(client, key, "send", "hello spark")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True and body["session_id"] == body["task_id"]
    assert json.loads(body["message"]) == {
        "ok": True, "data": {"echo": {"text": "hello spark"}}, "attempts": 1
    }  # fmt: skip
    assert body["message"] == json.dumps(json.loads(body["message"]), separators=(",", ":"),
                                         sort_keys=True)  # fmt: skip
    assert stub.calls == [
        {"connection_id": exposed["connection_id"], "action": "create_message",
         "params": {"text": "hello spark"}}
    ]  # fmt: skip

    # A JSON object is merged as params; JSON that is no object is text.
    assert run(client, key, "send", '{"text": "as params"}').status_code == 200
    assert run(client, key, "send", "42").status_code == 200
    assert [c["params"] for c in stub.calls[1:]] == [{"text": "as params"}, {"text": "42"}]


def test_a_sync_exposure_runs_the_sync(
    gateway_settings: Settings, key: str, exposed: dict[str, str], celery_app: Celery,
    stub: StubFleet,
) -> None:  # fmt: skip
    client = make_client(gateway_settings, celery_app)
    answer = run(client, key, "items", "Hello")
    assert answer.status_code == 200
    assert json.loads(answer.json()["message"])["sync_id"] == exposed["sync_id"]
    assert stub.syncs == [exposed["sync_id"]]


@pytest.mark.parametrize(
    ("name", "message", "status", "words"),
    [
        ("nobody", "hi", 404, "nothing is exposed as 'nobody'"),
        ("send", '{"colour": "red"}', 422, "needs the param 'text'"),
        ("send", '{"text": "x", "colour": "red"}', 422, "takes no param 'colour'"),
        ("send", '{"text": 5}', 422, "must be a string"),
        ("get", "some text", 422, "send a JSON object"),
        ("get", '{"id": "other"}', 422, "which this exposure fixes"),
        ("send", 7, 422, "message_content must be text"),
    ],
)
def test_bad_runs_are_refused_and_nothing_is_sent(
    gateway_settings: Settings, key: str, exposed: dict[str, str], celery_app: Celery,
    stub: StubFleet, name: str, message: Any, status: int, words: str,
) -> None:  # fmt: skip
    client = make_client(gateway_settings, celery_app)
    answer = run(client, key, name, message)
    assert answer.status_code == status
    assert words in answer.json()["detail"]
    assert stub.calls == []


def test_bad_bodies(gateway_settings: Settings, key: str, exposed: dict[str, str]) -> None:
    client = make_client(gateway_settings)
    headers = {"x-api-key": key, "content-type": "application/json"}
    for body, status in ((b"{", 422), (b"[1]", 422), (b"{" + b" " * (1 << 20) + b"}", 413)):
        answer = client.post(RUN.format("send"), content=body, headers=headers)
        assert answer.status_code == status
        assert set(answer.json()) == {"detail"}


def test_a_failed_call_is_an_error_status_with_one_sentence(
    gateway_settings: Settings, key: str, exposed: dict[str, str], celery_app: Celery
) -> None:
    client = make_client(gateway_settings, celery_app)
    failed = run(client, key, "send", "fail")
    assert failed.status_code == 502
    assert "the call failed: the provider answered 500 (boom)." in failed.json()["detail"]
    refused = run(client, key, "send", "refuse")
    assert refused.status_code == 422
    assert "the connection is disabled." in refused.json()["detail"]
    metrics = client.get("/metrics").text
    assert 'spark_integrations_spark_runs_total{kind="action",outcome="failed"} 2.0' in metrics


def test_past_the_wait_the_answer_is_the_task_id(
    gateway_settings: Settings, key: str, exposed: dict[str, str], celery_app: Celery,
    stub: StubFleet,
) -> None:  # fmt: skip
    client = make_client(gateway_settings, celery_app, spark_wait=0.3)
    answer = run(client, key, "send", "slow")
    stub.release.set()
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is True
    assert body["message"] == (
        f"task {body['task_id']} is pending; its outcome will be in the fleet's history "
        "(dlq list, metrics)"
    )
    # The task went on and ended in its own time.
    assert celery_app.AsyncResult(body["task_id"]).get(timeout=30)["ok"] is True
    metrics = client.get("/metrics").text
    assert 'spark_integrations_spark_runs_total{kind="action",outcome="waited"} 1.0' in metrics


def test_an_unreachable_broker_or_store_is_503(
    gateway_settings: Settings, key: str, exposed: dict[str, str]
) -> None:
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    app = create_app(dataclasses.replace(gateway_settings, broker_url=dead, result_backend=dead))
    dead_client = TestClient(app, base_url=PUBLIC_URL)
    answer = run(dead_client, key, "send", "hi")
    assert answer.status_code == 503 and "nothing was queued" in answer.json()["detail"]
    close_client(dead_client)

    @contextmanager
    def broken() -> Iterator[Session]:
        raise StoreError("the store at sqlite:///x is unreachable (OperationalError: no).")
        yield  # pragma: no cover

    down = TestClient(create_app(gateway_settings, sessions=broken), base_url=PUBLIC_URL)
    for answer in (
        down.get("/spark/health", headers={"x-api-key": key}),
        run(down, key, "send", "hi"),
    ):
        assert answer.status_code == 503
        assert answer.json() == {"detail": "the fleet's store cannot be reached; try again soon."}


def test_the_key_is_never_logged(
    gateway_settings: Settings, key: str, exposed: dict[str, str], celery_app: Celery,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    client = make_client(gateway_settings, celery_app)
    client.get("/spark/health", headers={"x-api-key": key})
    client.get("/spark/health", headers={"x-api-key": key + "wrong"})
    run(client, key, "send", "fail")
    run(client, key, "send", "hello")
    assert key not in caplog.text


def test_openapi_lists_every_route(gateway_settings: Settings) -> None:
    app = create_app(gateway_settings)
    documented = set(TestClient(app).get("/openapi.json").json()["paths"])
    assert {getattr(route, "path", "") for route in app.routes} <= documented


def test_json_nested_too_deep_is_refused_not_a_500(
    gateway_settings: Settings, key: str, exposed: dict[str, str]
) -> None:
    # json.loads raises RecursionError (no ValueError) past Python's recursion limit.
    client = make_client(gateway_settings)
    headers = {"x-api-key": key, "content-type": "application/json"}
    deep = "[" * 100_000
    as_body = client.post(RUN.format("get"), content=deep.encode(), headers=headers)
    assert as_body.status_code == 422 and as_body.json() == {
        "detail": "the run's body is not JSON."
    }
    # As the input of an action with no open text param: neither an object nor text it takes.
    as_input = run(client, key, "get", deep)
    assert as_input.status_code == 422 and "send a JSON object" in as_input.json()["detail"]


def test_a_client_gone_before_its_body_is_read_is_no_error(
    gateway_settings: Settings, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(gateway_settings)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": RUN.format("send"), "raw_path": RUN.format("send").encode(),
        "query_string": b"", "root_path": "", "server": ("gateway.test", 80),
        "client": ("127.0.0.1", 1), "headers": [(b"x-api-key", key.encode())],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 400
    assert "unexpected error" not in caplog.text


def test_the_wait_counts_from_the_request_not_from_the_publish(
    gateway_settings: Settings, key: str, exposed: dict[str, str], celery_app: Celery,
    stub: StubFleet, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Spark gives up 5 s after it sent the run: a publish that took the whole wait leaves no
    time to wait for the result. The clock is moved by hand (no timed assertion): publishing
    takes WAIT seconds of it, and no pause may start once WAIT seconds have passed since the
    request arrived."""
    wait = 30.0
    offset = [0.0]
    real = time.monotonic

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return real() + offset[0]

        @staticmethod
        def sleep(seconds: float) -> None:
            check_pause()

    async def pause(seconds: float) -> None:
        check_pause()

    def check_pause() -> None:
        assert Clock.monotonic() < arrived + wait, "a pause past the wait counted from arrival"

    monkeypatch.setattr(spark_source, "time", Clock)
    monkeypatch.setattr(spark_source, "_pause", pause, raising=False)

    class SlowPublish:
        def __getattr__(self, name: str) -> Any:
            return getattr(celery_app, name)

        def send_task(self, *args: Any, **kwargs: Any) -> Any:
            offset[0] += wait  # the publish took the whole wait
            return celery_app.send_task(*args, **kwargs)

    client = make_client(gateway_settings, SlowPublish(), spark_wait=wait)  # type: ignore[arg-type]
    arrived = Clock.monotonic()
    answer = run(client, key, "send", "slow")
    stub.release.set()
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"].startswith(f"task {answer.json()['task_id']} is pending;")
