"""Fixtures of the gateway tests: a migrated SQLite store, an OAuth connection, a TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import spark_integrations.settings as settings_module
from spark_integrations.gateway import ConnectFlows, Signer, create_app
from spark_integrations.migrations import runner
from spark_integrations.settings import Settings
from spark_integrations.store import OAuthFlow, SecretBox, session_scope
from spark_integrations.store.connections import add_connection
from spark_integrations.store.types import utcnow
from tests.unit.conftest import dispose_engines

PUBLIC_URL = "http://gateway.test"
PROVIDER = "https://provider.example"
TOKEN_URL = PROVIDER + "/oauth/token"
CLIENT_SECRET = "sandbox-secret-PLAINTEXT"


def flip_last(text: str) -> str:
    """``text`` with its last character changed (a tampered signature)."""
    return text[:-1] + ("B" if text.endswith("A") else "A")


class Clock:
    """A clock tests move by hand; it starts at the real time."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def gateway_settings(tmp_path: Path, fernet_key: str) -> Iterator[Settings]:
    """Embedded-mode settings over a migrated SQLite store in tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    s = settings_module.load(
        {
            "SPARK_INTEGRATIONS_HOME": str(home),
            "SPARK_INTEGRATIONS_SECRET_KEYS": fernet_key,
            "SPARK_INTEGRATIONS_PUBLIC_URL": PUBLIC_URL,
        }
    )
    runner.upgrade(s.database_url)
    yield s
    dispose_engines(s.database_url)


@pytest.fixture
def box(gateway_settings: Settings) -> SecretBox:
    return SecretBox(gateway_settings.secret_keys)


def new_connection(s: Settings, name: str = "acme", **config: Any) -> str:
    """An OAuth sandbox connection at PROVIDER, waiting for its connect."""
    with session_scope(s.database_url) as session:
        conn = add_connection(
            session,
            SecretBox(s.secret_keys),
            provider="sandbox",
            name=name,
            config={"base_url": PROVIDER, "client_id": "sandbox", **config},
            secrets={"client_secret": CLIENT_SECRET},
            status="needs_auth",
        )
        return conn.id


@pytest.fixture
def connection_id(gateway_settings: Settings) -> str:
    return new_connection(gateway_settings)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def flows(gateway_settings: Settings, box: SecretBox, clock: Clock) -> ConnectFlows:
    """The steps `connect` takes, on the same store and clock as the app."""
    s = gateway_settings
    return ConnectFlows(
        lambda: session_scope(s.database_url),
        box,
        Signer(s.secret_keys),
        s.public_url,
        clock=clock,
    )


@pytest.fixture
def client(gateway_settings: Settings, clock: Clock) -> Iterator[TestClient]:
    app = create_app(gateway_settings)
    app.state.flows.clock = clock
    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as test_client:
        yield test_client


def flow_row(s: Settings, flow_id: str) -> OAuthFlow | None:
    with session_scope(s.database_url) as session:
        return session.get(OAuthFlow, flow_id)
