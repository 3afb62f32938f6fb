"""Config keys a connector declares as deciding where its requests go (a region, another
endpoint's URL): changing one is like changing ``base_url`` (the secrets again, OAuth tokens
dropped), and those holding URLs meet the outbound URL policy, when stored and when used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

from spark_integrations.connectors import discover_connectors
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.errors import UsageError
from spark_integrations.store import OAuthToken, SecretBox, session_scope
from spark_integrations.store.connections import add_connection, get_connection
from tests.unit.conftest import run_cli as run
from tests.unit.task_env import task_env_fixture  # noqa: F401 - the task_env fixture


class RegionalSandbox(SandboxConnector):
    """The sandbox, with a region and an upload endpoint that decide where requests go."""

    name = "regional"
    config_keys: ClassVar[tuple[str, ...]] = ("region", "upload_url", "page_size")
    endpoint_config_keys: ClassVar[tuple[str, ...]] = ("region", "upload_url")


@pytest.fixture(autouse=True)
def regional(monkeypatch: pytest.MonkeyPatch) -> None:
    """``regional`` installed, as a plugin's entry point would install it."""
    monkeypatch.setitem(discover_connectors().connectors, "regional", RegionalSandbox)


def add_regional(capsys: pytest.CaptureFixture[str], home: Path) -> tuple[str, str, SecretBox]:
    """An active OAuth connection of ``regional`` holding a token; its id, store and box."""
    config = {"base_url": "http://127.0.0.1:9", "client_id": "app", "region": "us"}
    code, out, err = run(
        capsys, "connections", "add", "regional", "--name", "r", "--config", json.dumps(config),
        "--secret", "client_secret=cs", "--json",
    )  # fmt: skip
    assert code == 0, err
    cid = json.loads(out)["id"]
    url = f"sqlite:///{home / 'store.db'}"
    box = SecretBox((home / "secret.key").read_text().split())
    with session_scope(url) as session:
        session.add(OAuthToken(connection_id=cid, access_token=box.encrypt("at")))
        get_connection(session, cid).status = "active"
    return cid, url, box


def test_a_declared_endpoint_key_changed_needs_the_secrets_and_drops_the_tokens(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid, url, _ = add_regional(capsys, home)
    # A key that does not decide where requests go changes freely.
    code, _, err = run(capsys, "connections", "update", cid, "--config", '{"page_size": 50}')
    assert code == 0, err
    with session_scope(url) as session:
        assert session.get(OAuthToken, cid) is not None
    moved = json.dumps({"region": "eu"})
    code, out, err = run(capsys, "connections", "update", cid, "--config", moved)
    assert (code, out) == (2, "")
    assert err == (
        "spark-integrations: changing region changes where the connection's credentials are "
        "sent: give its secrets again in the same update (--secret client_secret).\n"
    )
    with session_scope(url) as session:
        assert get_connection(session, cid).config["region"] == "us"
        assert session.get(OAuthToken, cid) is not None
    code, out, err = run(
        capsys, "connections", "update", cid, "--config", moved, "--secret", "client_secret=cs2",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["status"] == "needs_auth"
    assert (
        "needs_auth (its region changed; connect it again)" in run(capsys, "connections", "list")[1]
    )
    with session_scope(url) as session:
        assert session.get(OAuthToken, cid) is None


def test_a_declared_url_key_meets_the_url_policy_and_a_plain_key_does_not(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid, _, _ = add_regional(capsys, home)
    for value, words in [
        ("http://uploads.example.com", "config upload_url must use https://"),
        ("https://user:Pw9secret@uploads.example.com", "config upload_url must not hold a user"),
        ("https://uploads.example.com/#x", "config upload_url must not hold a fragment"),
    ]:
        patch = json.dumps({"upload_url": value})
        code, out, err = run(
            capsys, "connections", "update", cid, "--config", patch,
            "--secret", "client_secret=cs2",
        )  # fmt: skip
        assert (code, out) == (2, ""), value
        assert words in err and err.count("\n") == 1 and "Pw9secret" not in err
    # A region is no URL: only the rule of the secrets applies to it.
    code, _, err = run(
        capsys, "connections", "update", cid, "--config", '{"region": "ap-southeast-2"}',
        "--secret", "client_secret=cs2",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run(
        capsys, "connections", "add", "regional", "--name", "u", "--config",
        json.dumps({"upload_url": "http://uploads.example.com"}), "--secret", "api_key=k",
    )  # fmt: skip
    assert code == 2 and "config upload_url must use https://" in err


def test_a_stored_endpoint_url_outside_the_policy_is_refused_when_used(
    task_env: str, fernet_key: str
) -> None:
    from spark_integrations.tasks.lookup import load_connection

    with session_scope(task_env) as session:
        cid = add_connection(
            session, SecretBox([fernet_key]), provider="regional", name="old",
            config={"upload_url": "http://legacy.internal:8080/up"}, secrets={"api_key": "k"},
            status="active",
        ).id  # fmt: skip
    with pytest.raises(UsageError) as info:
        load_connection(cid, fresh=True)
    assert str(info.value).startswith(f"connection {cid}'s config upload_url must use https://")


def test_the_endpoint_keys_a_connector_declares() -> None:
    urls = ("base_url", "authorize_url", "token_url")
    assert SandboxConnector.endpoint_keys() == SandboxConnector.url_keys() == urls
    assert RegionalSandbox.endpoint_keys() == (*urls, "region", "upload_url")
    assert RegionalSandbox.url_keys() == (*urls, "upload_url")
    with pytest.raises(UsageError, match="config upload_url must be an http:// or https:// URL"):
        RegionalSandbox.validate_config({"upload_url": "ftp://uploads.example.com"})
