"""A connection's URLs and secrets as stored: the outbound URL policy, secrets that can be sent,
and a change of URL that needs the secrets again and drops the OAuth tokens."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from spark_integrations.errors import UsageError
from spark_integrations.store import OAuthFlow, OAuthToken, SecretBox, session_scope
from spark_integrations.store.connections import (
    add_connection,
    connection_secrets,
    get_connection,
    moved_endpoints,
    update_connection,
)
from spark_integrations.store.types import utcnow
from tests.unit.conftest import run_cli as run
from tests.unit.task_env import task_env_fixture  # noqa: F401 - the task_env fixture


def test_moved_endpoints() -> None:
    current = {"base_url": "https://a.test", "token_url": "https://a.test/t", "rate_limit": 5}
    assert moved_endpoints(current, {"rate_limit": 9}) == []
    assert moved_endpoints(current, {"base_url": "https://a.test"}) == []
    assert moved_endpoints(current, {"base_url": "https://b.test"}) == ["base_url"]
    assert moved_endpoints(current, {"token_url": None}) == ["token_url"]
    assert moved_endpoints(current, {"authorize_url": "https://a.test/a"}) == ["authorize_url"]
    # A connector's own endpoint keys count when the caller names them.
    assert moved_endpoints(current, {"region": "eu"}) == []
    keys = ("base_url", "authorize_url", "token_url", "region")
    assert moved_endpoints(current, {"region": "eu", "base_url": "https://b.test"}, keys) == [
        "base_url",
        "region",
    ]


def _oauth_connection(url: str, box: SecretBox) -> str:
    with session_scope(url) as session:
        conn = add_connection(
            session,
            box,
            provider="sandbox",
            name="oauth",
            config={"base_url": "https://old.test", "client_id": "app"},
            secrets={"client_secret": "cs-old", "webhook_secret": "wh"},
            status="active",
        )
        session.add(
            OAuthToken(connection_id=conn.id, access_token=box.encrypt("at"), refresh_token=None)
        )
        session.add(
            OAuthFlow(
                id="flow-1",
                connection_id=conn.id,
                link_expires_at=utcnow() + timedelta(minutes=5),
            )
        )
        return conn.id


def test_a_url_change_needs_the_secrets_and_drops_tokens_and_flows(
    store_url: str, fernet_key: str
) -> None:
    box = SecretBox([fernet_key])
    cid = _oauth_connection(store_url, box)
    with session_scope(store_url) as session, pytest.raises(UsageError) as info:
        update_connection(session, box, cid, config={"base_url": "https://attacker.test"})
    assert str(info.value) == (
        "changing base_url changes where the connection's credentials are sent: give its "
        "secrets again in the same update (--secret client_secret)."
    )
    with session_scope(store_url) as session:
        conn = get_connection(session, cid)
        assert conn.config["base_url"] == "https://old.test" and conn.token is not None
        # Other changes leave tokens alone.
        update_connection(session, box, cid, config={"rate_limit": 3})
        assert session.get(OAuthToken, cid) is not None
    with session_scope(store_url) as session:
        conn = update_connection(
            session,
            box,
            cid,
            config={"base_url": "https://new.test"},
            secrets={"client_secret": "cs-new"},
        )
        assert conn.config["base_url"] == "https://new.test"
        assert connection_secrets(box, conn) == {"client_secret": "cs-new", "webhook_secret": "wh"}
    with session_scope(store_url) as session:
        assert session.get(OAuthToken, cid) is None
        flow = session.get(OAuthFlow, "flow-1")
        assert flow is not None and flow.status == "failed" and flow.finished_at is not None


def test_a_url_change_of_a_connection_without_secrets_drops_its_tokens(
    store_url: str, connection_id: str, fernet_key: str
) -> None:
    box = SecretBox([fernet_key])
    with session_scope(store_url) as session:
        session.add(OAuthToken(connection_id=connection_id, access_token=box.encrypt("at")))
    with session_scope(store_url) as session:
        update_connection(session, box, connection_id, config={"token_url": "https://t.test/t"})
    with session_scope(store_url) as session:
        assert session.get(OAuthToken, connection_id) is None


# --- through the command line (embedded store, in this process) --------------------------------


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"base_url": "http://api.example.com"}, "config base_url must use https://"),
        ({"base_url": "https://user:Pw9secret@api.example.com"}, "must not hold a user name"),
        ({"base_url": "https://api.example.com/#x"}, "must not hold a fragment"),
        ({"base_url": "https://api.example.com/?k=1"}, "must not hold a query string"),
        ({"token_url": "http://auth.example.com/t"}, "config token_url must use https://"),
        ({"authorize_url": "javascript://x"}, "config authorize_url must be"),
    ],
)
def test_add_refuses_urls_outside_the_policy(
    home: Path, capsys: pytest.CaptureFixture[str], config: dict[str, str], words: str
) -> None:
    code, out, err = run(
        capsys, "connections", "add", "sandbox", "--name", "x", "--config", json.dumps(config)
    )
    assert code == 2 and out == ""
    assert words in err and err.count("\n") == 1 and "Pw9secret" not in err


def test_add_accepts_http_to_loopback_and_to_allowed_hosts(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    loopback = {"base_url": "http://127.0.0.1:9"}
    code, _, err = run(
        capsys, "connections", "add", "sandbox", "--name", "a", "--config", json.dumps(loopback)
    )
    assert code == 0, err
    other = {"base_url": "http://sandbox.internal:8080"}
    args = ["connections", "add", "sandbox", "--name", "b", "--config", json.dumps(other)]
    assert run(capsys, *args)[0] == 2
    monkeypatch.setenv("SPARK_INTEGRATIONS_ALLOW_HTTP_HOSTS", "sandbox.internal")
    code, _, err = run(capsys, *args)
    assert code == 0, err


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        ("api_key=sk live Pw9secret", "secret api_key holds characters an HTTP header cannot"),
        ("username=us:er", "secret username must not hold ':'"),
        ("password=Pw9secret\u5bc6", "secret password holds characters HTTP Basic"),
    ],
)
def test_add_refuses_secrets_their_scheme_cannot_send(
    home: Path, capsys: pytest.CaptureFixture[str], secret: str, words: str
) -> None:
    code, out, err = run(capsys, "connections", "add", "sandbox", "--name", "x", "--secret", secret)
    assert code == 2 and out == ""
    assert words in err and "Pw9secret" not in err and err.count("\n") == 1


def test_update_of_a_url_needs_the_secrets_again_and_returns_to_needs_auth(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {"base_url": "http://127.0.0.1:9", "client_id": "app"}
    code, out, err = run(
        capsys, "connections", "add", "sandbox", "--name", "o", "--config", json.dumps(config),
        "--secret", "client_secret=cs", "--json",
    )  # fmt: skip
    assert code == 0, err
    cid = json.loads(out)["id"]
    url = f"sqlite:///{home / 'store.db'}"
    keys = (home / "secret.key").read_text().split()
    box = SecretBox(keys)
    with session_scope(url) as session:
        session.add(OAuthToken(connection_id=cid, access_token=box.encrypt("at")))
        get_connection(session, cid).status = "active"
    moved = json.dumps({"base_url": "http://127.0.0.2:9"})
    code, _, err = run(capsys, "connections", "update", cid, "--config", moved)
    assert code == 2 and "give its secrets again in the same update (--secret client_secret)" in err
    code, out, err = run(
        capsys, "connections", "update", cid, "--config", moved, "--secret", "client_secret=cs2",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["status"] == "needs_auth"
    code, out, _ = run(capsys, "connections", "list")
    assert "needs_auth (its base_url changed; connect it again)" in out
    with session_scope(url) as session:
        assert session.get(OAuthToken, cid) is None
    # An API-key connection moved with its key given again stays active.
    code, out, err = run(
        capsys, "connections", "add", "sandbox", "--name", "k", "--config",
        json.dumps({"base_url": "http://127.0.0.1:9"}), "--secret", "api_key=k1", "--json",
    )  # fmt: skip
    kid = json.loads(out)["id"]
    code, out, err = run(
        capsys, "connections", "update", kid, "--config", moved, "--secret", "api_key=k2", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["status"] == "active"


# --- when a connection is used ----------------------------------------------------------------


def test_a_stored_url_outside_the_policy_is_refused_when_used(
    task_env: str, fernet_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection stored before the policy (or before the operator narrowed the hosts allowed
    over http) is refused in one sentence, not used."""
    from spark_integrations.tasks import context
    from spark_integrations.tasks.lookup import load_connection

    with session_scope(task_env) as session:
        conn = add_connection(
            session,
            SecretBox([fernet_key]),
            provider="sandbox",
            name="old",
            config={"base_url": "http://legacy.internal:8080"},
            secrets={"api_key": "k"},
            status="active",
        )
        cid = conn.id
    with pytest.raises(UsageError) as info:
        load_connection(cid, fresh=True)
    assert str(info.value) == (
        f"connection {cid}'s config base_url must use https:// (plain http:// only to a loopback "
        "host or a host listed in SPARK_INTEGRATIONS_ALLOW_HTTP_HOSTS); change it with "
        "`connections update`."
    )
    monkeypatch.setenv("SPARK_INTEGRATIONS_ALLOW_HTTP_HOSTS", "legacy.internal")
    context.current_settings.cache_clear()
    assert load_connection(cid, fresh=True).config["base_url"] == "http://legacy.internal:8080"
