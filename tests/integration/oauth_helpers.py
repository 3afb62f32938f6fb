"""OAuth helpers of the integration tests: tokens obtained from the real sandbox, the store read.

:func:`connect_directly` runs the authorisation-code grant against the sandbox with plain HTTP
(:func:`connect_with_code` against a provider's emulator) and stores the answer the way the
gateway's callback does, for tests about what happens after the connect flow (the flow itself is
tested through the gateway in test_connect_flow.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from sqlalchemy import select

from spark_integrations.connectors.oauth import TokenEndpoint
from spark_integrations.store import Connection, OAuthToken, SecretBox, session_scope
from spark_integrations.store.tokens import StoredToken, read_token, save_connected_token
from spark_integrations.store.types import utcnow

CLIENT = {"client_id": "sandbox"}
CLIENT_SECRET = "client_secret=sandbox-secret"
ROOT = Path(__file__).resolve().parents[2]


def box_of(env: Mapping[str, str]) -> SecretBox:
    return SecretBox(env["SPARK_INTEGRATIONS_SECRET_KEYS"].split(","))


def connect_with_code(
    env: Mapping[str, str],
    connection_id: str,
    *,
    authorize_url: str,
    token_url: str,
    client_id: str,
    client_secret: str,
    params: Mapping[str, str],
    statuses: tuple[int, ...] = (302, 303),
) -> tuple[dict[str, Any], int]:
    """Authorise at ``authorize_url`` with ``params`` (the provider approves at once), exchange
    the code at ``token_url`` and store the tokens as the gateway's callback stores them.

    Returns the token answer and the stored version."""
    redirect = "http://127.0.0.1:9/callback"
    answer = requests.get(
        authorize_url,
        params={"client_id": client_id, "redirect_uri": redirect, "state": "s", **params},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code in statuses, answer.text
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    requested_at = utcnow()
    endpoint = TokenEndpoint(token_url, client_id, client_secret)
    token = endpoint.exchange_code(code, redirect_uri=redirect, code_verifier=None)
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        version = save_connected_token(
            session, box_of(env), connection_id, token, requested_at=requested_at
        )
    return token, version


def connect_directly(
    env: Mapping[str, str],
    connection_id: str,
    sandbox_url: str,
    *,
    client_secret: str = "sandbox-secret",
) -> int:
    """Authorise at the sandbox (it approves at once), exchange the code, store the tokens."""
    _, version = connect_with_code(
        env,
        connection_id,
        authorize_url=f"{sandbox_url}/oauth/authorize",
        token_url=f"{sandbox_url}/oauth/token",
        client_id="sandbox",
        client_secret=client_secret,
        params={"response_type": "code"},
    )
    return version


def stored_token(env: Mapping[str, str], connection_id: str) -> StoredToken | None:
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        return read_token(session, box_of(env), connection_id)


def connection_row(env: Mapping[str, str], connection_id: str) -> tuple[str, str | None]:
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        conn = session.get(Connection, connection_id)
        assert conn is not None
        return conn.status, conn.status_reason


def expire_in_store(env: Mapping[str, str], connection_id: str) -> None:
    """Make the stored access token expired by the fleet's clock (the provider still takes it):
    the next call that reads it from the store refreshes, with no sleep in the test."""
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        token = session.get(OAuthToken, connection_id)
        assert token is not None
        token.expires_at = utcnow() - timedelta(seconds=1)


def raw_token_columns(env: Mapping[str, str]) -> bytes:
    """Every stored token column as bytes, for plaintext scans."""
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        rows = session.execute(select(OAuthToken.access_token, OAuthToken.refresh_token)).all()
    return b"\n".join(bytes(v) for row in rows for v in row if v is not None)


# A refresher in its own process, killed with SIGKILL at a chosen point of the protocol. The
# points are reached by wrapping the functions the protocol calls, so nothing in the fleet's
# code exists for the test's sake.
_REFRESHER = """
import os, signal, sys
import spark_integrations.tasks.tokens as tokens
from spark_integrations.connectors import get_connector
from spark_integrations.connectors.oauth import TokenEndpoint
from spark_integrations.tasks.lookup import load_connection

point = sys.argv[2]

def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "before-send":
    tokens.begin_refresh = die
elif point == "after-send":
    original = TokenEndpoint.refresh
    def sent_then_die(self, *a, **k):
        original(self, *a, **k)
        die()
    TokenEndpoint.refresh = sent_then_die
elif point == "after-store":
    original_read = tokens.StoredTokens.read
    def read_then_die(self):
        if self.refreshed:
            die()
        return original_read(self)
    tokens.StoredTokens.read = read_then_die
info = load_connection(sys.argv[1])
source = tokens.StoredTokens(info.id, get_connector(info.provider), info.config, info.secrets)
source.refused_version = source.read().version
source.current()
print("finished without being killed")
"""


def refresher_killed_at(env: Mapping[str, str], connection_id: str, point: str) -> int:
    """Run a refresh in a new process that SIGKILLs itself at ``point``; its return code."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_REFRESHER), connection_id, point],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stdout, done.stderr)
    return done.returncode


def sandbox_revoke(sandbox_url: str, **body: Any) -> None:
    answer = requests.post(f"{sandbox_url}/_sandbox/revoke", json=body, timeout=10)
    assert answer.status_code < 300, answer.text
