"""The OAuth connect flow end to end: `connect`, the gateway and the sandbox as real processes.

The sandbox's authorisation page approves at once and redirects back, so following the link
`connect` prints with a plain HTTP client walks the whole flow: gateway → provider → callback.
The store is PostgreSQL (server mode); no worker is involved.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from spark_integrations.store import Connection, OAuthFlow, OAuthToken, session_scope
from spark_integrations.store.tokens import mark_needs_reauth
from tests.integration.fleet import (
    CLI,
    FleetProcess,
    add_connection,
    free_port,
    run_cli,
    start_sandbox,
)
from tests.integration.oauth_helpers import CLIENT, CLIENT_SECRET, box_of

pytestmark = pytest.mark.server


@pytest.fixture
def gateway_env(redis_env: dict[str, str], short_tmp: Path, processes: list[Any]) -> dict[str, str]:
    """Server mode on PostgreSQL with a running gateway; its public URL set for `connect` too."""
    port = free_port()
    env = {**redis_env, "SPARK_INTEGRATIONS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    gateway = FleetProcess(env, ["gateway", f"--port={port}"], short_tmp / "gateway.log")
    processes.append(gateway)
    gateway.start().wait_ready("gateway listening on")
    env["TEST_GATEWAY_LOG"] = str(gateway.log)
    return env


def start_connect(env: dict[str, str], connection_id: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CLI, "connect", connection_id, "--timeout=60", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def connection(env: dict[str, str], connection_id: str) -> dict[str, Any]:
    done = run_cli(env, "connections", "list", "--json")
    assert done.returncode == 0, done.stderr
    [found] = [c for c in json.loads(done.stdout) if c["id"] == connection_id]
    return dict(found)


def test_connect_stores_encrypted_tokens_and_activates_the_connection(
    gateway_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = gateway_env
    public = env["SPARK_INTEGRATIONS_PUBLIC_URL"]
    sandbox = start_sandbox(env, short_tmp, processes)
    cid = add_connection(env, "oauth", {"base_url": sandbox.url, **CLIENT}, CLIENT_SECRET)
    assert connection(env, cid)["status"] == "needs_auth"

    proc = start_connect(env, cid)
    try:
        assert proc.stdout is not None
        link = proc.stdout.readline().strip()
        assert link.startswith(f"{public}/oauth/{cid}/authorize?"), link
        walked = requests.get(link, allow_redirects=True, timeout=30)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert walked.status_code == 200, walked.text
    assert "Connected" in walked.text
    assert [r.status_code for r in walked.history] == [302, 302]
    assert proc.returncode == 0, err
    assert f"connection oauth ({cid}) is connected and active." in out

    assert connection(env, cid)["status"] == "active"
    box = box_of(env)
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        token = session.get(OAuthToken, cid)
        assert token is not None
        access = box.decrypt(token.access_token)
        assert access and access.encode() not in token.access_token
        assert token.refresh_token is not None
        assert box.decrypt(token.refresh_token).encode() not in token.refresh_token
        [flow] = session.scalars(select(OAuthFlow).where(OAuthFlow.connection_id == cid))
        assert flow.status == "succeeded" and flow.state_hash is None
    stats = sandbox.stats()
    assert stats["tokens_issued"] >= 1 and stats["authorization_codes"] == 1

    # The callback the provider sent, once more: the state is used up.
    callback = walked.url
    query = parse_qs(urlsplit(callback).query)
    assert urlsplit(callback).path == "/oauth/callback" and "code" in query
    replay = requests.get(callback, allow_redirects=False, timeout=30)
    assert replay.status_code == 400
    assert sandbox.stats()["tokens_issued"] == stats["tokens_issued"]
    # The link itself is single use too.
    assert requests.get(link, allow_redirects=False, timeout=30).status_code == 409

    # Neither the code nor the state reached the gateway's log.
    log = Path(env["TEST_GATEWAY_LOG"]).read_text()
    for secret in (query["code"][0], query["state"][0], access):
        assert secret not in log


def test_connect_json_and_a_refused_exchange(
    gateway_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = gateway_env
    sandbox = start_sandbox(env, short_tmp, processes)
    cid = add_connection(
        env,
        "wrong-secret",
        {"base_url": sandbox.url, **CLIENT},
        "client_secret=not-the-secret",
    )
    proc = start_connect(env, cid, "--json")
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        link = first.rsplit(" ", 1)[-1].strip()
        walked = requests.get(link, allow_redirects=True, timeout=30)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert walked.status_code == 400  # the provider refused the client's credentials
    assert proc.returncode == 1
    doc = json.loads(out)
    assert doc["connection_id"] == cid and doc["status"] == "failed" and doc["url"] == link
    assert "invalid_client" in doc["error"] or "401" in doc["error"]
    assert "not-the-secret" not in out + err + walked.text
    assert err.strip().splitlines()[-1].startswith("spark-integrations: connection wrong-secret")
    assert connection(env, cid)["status"] == "needs_auth"


def test_url_only_prints_one_link_and_unsigned_links_are_refused(
    gateway_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = gateway_env
    public = env["SPARK_INTEGRATIONS_PUBLIC_URL"]
    sandbox = start_sandbox(env, short_tmp, processes)
    cid = add_connection(env, "later", {"base_url": sandbox.url, **CLIENT}, CLIENT_SECRET)
    done = run_cli(env, "connect", cid, "--url-only")
    assert done.returncode == 0, done.stderr
    [link] = done.stdout.split()
    assert link.startswith(f"{public}/oauth/{cid}/authorize?")
    as_json = run_cli(env, "connect", cid, "--url-only", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert set(json.loads(as_json.stdout)) == {"connection_id", "url"}

    unsigned = requests.get(f"{public}/oauth/{cid}/authorize", allow_redirects=False, timeout=30)
    assert unsigned.status_code == 400
    assert unsigned.headers["Cache-Control"] == "no-store"
    tampered_link = link[:-1] + ("B" if link.endswith("A") else "A")
    tampered = requests.get(tampered_link, allow_redirects=False, timeout=30)
    assert tampered.status_code == 403
    assert sandbox.stats()["authorization_codes"] == 0
    assert requests.get(link, allow_redirects=False, timeout=30).status_code == 302

    missing = run_cli(env, "connect", "no-such-connection")
    assert missing.returncode == 1 and "no-such-connection" in missing.stderr
    no_oauth = add_connection(env, "keyed", {"base_url": sandbox.url}, "api_key=k")
    refused = run_cli(env, "connect", no_oauth, "--url-only")
    assert refused.returncode == 2 and "client_id" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_connecting_again_heals_a_connection_that_needs_reauthorisation(
    gateway_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    """A connection turned needs_reauth (its grant died) is active again after the connect flow,
    with new tokens under a newer version."""
    env = gateway_env
    sandbox = start_sandbox(env, short_tmp, processes)
    cid = add_connection(env, "heal", {"base_url": sandbox.url, **CLIENT}, CLIENT_SECRET)
    for _ in range(2):
        done = run_cli(env, "connect", cid, "--url-only")
        assert done.returncode == 0, done.stderr
        walked = requests.get(done.stdout.split()[-1], allow_redirects=True, timeout=30)
        assert walked.status_code == 200, walked.text
        with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
            token = session.get(OAuthToken, cid)
            assert token is not None
            version = token.version
            mark_needs_reauth(session, cid, "the provider refused the refresh token")
        assert connection(env, cid)["status"] == "needs_reauth"
    # The second connect ran on a needs_reauth connection: it healed it and bumped the version.
    assert version == 2
    done = run_cli(env, "connect", cid, "--url-only")
    requests.get(done.stdout.split()[-1], allow_redirects=True, timeout=30)
    assert connection(env, cid)["status"] == "active"
    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        conn = session.get(Connection, cid)
        assert conn is not None and conn.status_reason is None
