"""Fixtures of the sandbox tests: real servers on free loopback ports, stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from spark_integrations.sandbox import SandboxOptions, SandboxServer
from tests.unit.sandbox.helpers import API_KEY, RECORDS

StartSandbox = Callable[..., SandboxServer]


@pytest.fixture
def start_sandbox() -> Iterator[StartSandbox]:
    """Start sandboxes with given options (port 0, 250 records, an API key, a seed by default)."""
    servers: list[SandboxServer] = []

    def start(**options: Any) -> SandboxServer:
        options.setdefault("port", 0)
        options.setdefault("records", RECORDS)
        options.setdefault("api_key", API_KEY)
        options.setdefault("seed", 7)
        server = SandboxServer(SandboxOptions(**options)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(start_sandbox: StartSandbox) -> SandboxServer:
    """A sandbox with default options."""
    return start_sandbox()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A keep-alive session without credentials, ignoring proxy variables."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def api(http: requests.Session) -> requests.Session:
    """The same session, sending the static API key."""
    http.headers["X-API-Key"] = API_KEY
    return http
