"""Webhook intake when the request or the fleet's services misbehave in ways that are neither
"down" nor "refused": a NUL in the path, a store pool with no connection free, a broker that
takes the connection and never answers. None is a 500, and none holds a thread for good.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from spark_integrations.gateway import create_app
from spark_integrations.settings import Settings
from spark_integrations.store import session_scope
from tests.unit.gateway.conftest import PUBLIC_URL
from tests.unit.gateway.webhook_helpers import (
    add_hook_connection,
    close_gateway,
    events,
    gateway_fixture,  # noqa: F401 - the gateway fixture
    hook_settings_fixture,  # noqa: F401 - the hook_settings fixture
    signed,
)

pytestmark = pytest.mark.server

URL = "/webhooks/sandbox/{}"


def test_a_nul_in_the_connection_id_is_404_not_503(
    gateway: TestClient, hook_settings: Settings
) -> None:
    """PostgreSQL refuses a NUL in a text parameter; that is the sender's mistake, not a store
    that is down (a 503 would have the sender retry it forever)."""
    cid = add_hook_connection(hook_settings)
    body, headers = signed()
    answer = gateway.post(URL.format(cid[:8] + "%00" + cid[8:]), content=body, headers=headers)
    assert answer.status_code == 404, answer.text
    assert events(hook_settings) == []


def test_no_free_connection_in_the_store_pool_is_503(hook_settings: Settings) -> None:
    """SQLAlchemy's pool TimeoutError is no DBAPIError: it was a 500."""
    cid = add_hook_connection(hook_settings)

    @contextmanager
    def pool_exhausted() -> Iterator[Session]:
        raise PoolTimeoutError("QueuePool limit of size 5 overflow 5 reached")
        yield  # pragma: no cover

    app = create_app(hook_settings, sessions=pool_exhausted)
    body, headers = signed()
    with TestClient(app, base_url=PUBLIC_URL) as client:
        answer = client.post(URL.format(cid), content=body, headers=headers)
    assert answer.status_code == 503, answer.text


def test_a_stored_event_is_202_whatever_fails_while_marking_it_unsent(
    hook_settings: Settings,
) -> None:
    """The send failed, and so did the update marking the event for the sweep: the event is
    durable all the same, so the answer is 202 (it was a 500 for a pool timeout)."""
    cid = add_hook_connection(hook_settings)
    opened: list[int] = []

    @contextmanager
    def second_fails() -> Iterator[Session]:
        opened.append(1)
        if len(opened) > 2:  # the connection's lookup, the insert, then the update
            raise PoolTimeoutError("QueuePool limit of size 5 overflow 5 reached")
        with session_scope(hook_settings.database_url) as session:
            yield session

    down = dataclasses.replace(hook_settings, broker_url="redis://127.0.0.1:1/0")
    app = create_app(down, sessions=second_fails)
    body, headers = signed()
    with TestClient(app, base_url=PUBLIC_URL) as client:
        answer = client.post(URL.format(cid), content=body, headers=headers)
    close_gateway(client)
    assert answer.status_code == 202, answer.text
    [event] = events(hook_settings)
    assert event.status == "received" and event.enqueued_at is not None  # the sweep's, later


class SilentBroker:
    """A TCP server that takes connections and reads, but never answers (a paused Redis, or a
    network cut after the connection was made)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("hook_settings", ["sqlite"], indirect=True)
def test_a_broker_that_never_answers_still_gets_202_and_frees_the_thread(
    hook_settings: Settings,
) -> None:
    broker = SilentBroker()
    url = f"redis://127.0.0.1:{broker.port}/0"
    silent = dataclasses.replace(hook_settings, broker_url=url, result_backend=url)
    cid = add_hook_connection(hook_settings)
    answers: list[Any] = []

    def post() -> None:
        with TestClient(create_app(silent), base_url=PUBLIC_URL) as client:
            body, headers = signed()
            answers.append(client.post(URL.format(cid), content=body, headers=headers))

    sender = threading.Thread(target=post, daemon=True)
    try:
        sender.start()
        # Not a timing assertion: without a socket timeout the request never ends at all.
        sender.join(120)
        assert not sender.is_alive(), "the intake thread hangs on a broker that never answers"
    finally:
        broker.close()
    [answer] = answers
    assert answer.status_code == 202, answer.text
    [event] = events(hook_settings)
    assert event.status == "received" and event.enqueued_at is None  # left for the sweep
