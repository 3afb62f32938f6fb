"""What the webhook intake tests share: a store of either kind, signed deliveries, the queue.

Deliveries are signed with the ``standardwebhooks`` package (as a sender would), never with the
gateway's own code; queued tasks are read back from the real broker (this machine's Redis).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from starlette.testclient import TestClient

from spark_integrations.constants import QUEUE_WEBHOOKS
from spark_integrations.gateway import create_app
from spark_integrations.migrations import runner
from spark_integrations.settings import Settings
from spark_integrations.store import SecretBox, WebhookEvent, session_scope
from spark_integrations.store.connections import add_connection
from tests.unit.gateway.conftest import PUBLIC_URL

SECRET = "whsec_" + base64.b64encode(b"intake-test-key-" * 2).decode()
BODY = {"type": "item.updated", "data": {"id": "c-1"}}
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture(name="hook_settings", params=["sqlite", "postgresql"])
def hook_settings_fixture(
    request: pytest.FixtureRequest, gateway_settings: Settings, redis_url: str
) -> Settings:
    """The gateway's settings over a migrated store of each kind, the machine's Redis as broker."""
    s = dataclasses.replace(gateway_settings, broker_url=redis_url, result_backend=redis_url)
    if request.param == "sqlite":
        return s
    url = request.getfixturevalue("postgres_url")
    runner.upgrade(url)
    return dataclasses.replace(s, database_url=url)


def add_hook_connection(
    s: Settings, name: str = "hooks", provider: str = "sandbox", secret: str = SECRET
) -> str:
    """A connection holding ``secret`` as its webhook_secret; returns its id."""
    with session_scope(s.database_url) as session:
        conn = add_connection(
            session,
            SecretBox(s.secret_keys),
            provider=provider,
            name=name,
            config={"base_url": "http://127.0.0.1:9"},
            secrets={"webhook_secret": secret, "api_key": "k"},
            status="active",
        )
        return conn.id


@pytest.fixture(name="gateway")
def gateway_fixture(hook_settings: Settings) -> Iterator[TestClient]:
    """A TestClient of the gateway; its client app's connections closed afterwards."""
    with TestClient(create_app(hook_settings), base_url=PUBLIC_URL) as client:
        yield client
    close_gateway(client)


def close_gateway(client: TestClient) -> None:
    """Close the broker connections of a gateway's client app (if it built one)."""
    spark = client.app.state.spark  # type: ignore[attr-defined]
    if spark._celery is not None:
        spark._celery.close()


def signed(
    body: bytes | dict[str, Any] = BODY,
    *,
    msg_id: str | None = None,
    secret: str = SECRET,
    at: float | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A body and the Standard Webhooks headers that sign it."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return raw, {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, raw),
    }


def events(s: Settings) -> list[WebhookEvent]:
    """Every stored webhook event, oldest first."""
    with session_scope(s.database_url) as session:
        stmt = select(WebhookEvent).order_by(WebhookEvent.received_at, WebhookEvent.id)
        return list(session.scalars(stmt))


def queued(s: Settings) -> list[dict[str, Any]]:
    """The tasks waiting in the broker's webhooks queue: ``{"id", "task", "kwargs"}`` each."""
    client = redis.Redis.from_url(s.broker_url)
    try:
        raw = client.lrange(QUEUE_WEBHOOKS, 0, -1)
    finally:
        client.close()
    found = []
    for message in reversed(raw):  # kombu pushes on the left
        envelope = json.loads(message)
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        headers = envelope["headers"]
        found.append({"id": headers["id"], "task": headers["task"], "kwargs": kwargs, "args": args})
    return found


def no_secret_in(text: str) -> bool:
    """Whether ``text`` holds neither the secret nor its base64 key."""
    return SECRET.split("_", 1)[1] not in text
