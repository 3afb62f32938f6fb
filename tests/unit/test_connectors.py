"""Connector discovery through entry points, and validation of a connection's config and secrets."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

import pytest

from spark_integrations.connectors import Connector, discover_connectors, get_connector
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.constants import CONNECTOR_ENTRY_POINT_GROUP
from spark_integrations.errors import UsageError

GROUP = CONNECTOR_ENTRY_POINT_GROUP
registry_module = importlib.import_module("spark_integrations.connectors.registry")


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    discover_connectors.cache_clear()
    yield
    discover_connectors.cache_clear()


# --- discovery ----------------------------------------------------------------------------------


def test_sandbox_found_through_real_entry_point() -> None:
    reg = discover_connectors()
    assert reg.connectors["sandbox"] is SandboxConnector
    assert reg.broken == ()
    assert get_connector("sandbox") is SandboxConnector


def test_unknown_provider_lists_known_ones() -> None:
    with pytest.raises(UsageError) as info:
        get_connector("nope")
    assert "'nope'" in str(info.value)
    assert "sandbox" in str(info.value)


def test_registry_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        calls.append(group)
        return [
            EntryPoint("sandbox", "spark_integrations.connectors.sandbox:SandboxConnector", GROUP)
        ]

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    assert discover_connectors() is discover_connectors()
    assert calls == [GROUP]


class NotAConnector:
    name = "plain"


class Misnamed(Connector):
    name = "something-else"


class Nameless(Connector):
    """A plugin class that forgot to declare its ``name``."""


def test_broken_plugins_recorded_and_good_one_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        EntryPoint("ghost", "no_such_module_for_spark_tests:Ghost", GROUP),
        EntryPoint("pathy", "os:path", GROUP),
        EntryPoint("plain", f"{__name__}:NotAConnector", GROUP),
        EntryPoint("renamed", f"{__name__}:Misnamed", GROUP),
        EntryPoint("missing_attr", "spark_integrations.connectors.sandbox:NoSuchClass", GROUP),
        EntryPoint("sandbox", "spark_integrations.connectors.sandbox:SandboxConnector", GROUP),
    ]

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        assert group == GROUP
        return eps

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    reg = discover_connectors()
    assert list(reg.connectors) == ["sandbox"]
    assert reg.connectors["sandbox"] is SandboxConnector
    broken = {b.name: b for b in reg.broken}
    assert set(broken) == {"ghost", "pathy", "plain", "renamed", "missing_attr"}
    assert broken["ghost"].value == "no_such_module_for_spark_tests:Ghost"
    assert "ModuleNotFoundError" in broken["ghost"].error
    assert "Connector" in broken["pathy"].error
    assert "Connector" in broken["plain"].error
    assert "something-else" in broken["renamed"].error
    assert "AttributeError" in broken["missing_attr"].error
    # The good one is still usable, a broken one is not.
    assert get_connector("sandbox") is SandboxConnector
    with pytest.raises(UsageError):
        get_connector("ghost")


def test_plugin_class_without_name_is_recorded_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        EntryPoint("nameless", f"{__name__}:Nameless", GROUP),
        EntryPoint("sandbox", "spark_integrations.connectors.sandbox:SandboxConnector", GROUP),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda *, group: eps)
    reg = discover_connectors()
    assert [b.name for b in reg.broken] == ["nameless"]
    assert reg.connectors == {"sandbox": SandboxConnector}


def test_no_plugin_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", lambda *, group: [])
    with pytest.raises(UsageError) as info:
        get_connector("sandbox")
    assert "none installed" in str(info.value)


# --- config validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"base_url": "http://127.0.0.1:8000"},
        {"base_url": "https://api.example.com/v2", "rate_limit": 2.5},
        {"rate_limit": 10},
        {
            "client_id": "cid",
            "authorize_url": "https://id.example/authorize",
            "token_url": "https://id.example/token",
            "scopes": ["read", "write"],
        },
        {"scopes": []},
    ],
)
def test_valid_config_accepted(config: dict[str, Any]) -> None:
    SandboxConnector.validate_config(config)


def test_unknown_config_key_refused() -> None:
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_config({"base_url": "http://x", "colour": "blue"})
    assert "'colour'" in str(info.value)
    assert "base_url" in str(info.value)


@pytest.mark.parametrize("key", ["base_url", "authorize_url", "token_url"])
@pytest.mark.parametrize(
    "value", ["ftp://example.org", "example.org", "http://", "javascript:alert(1)", 42, None, ""]
)
def test_url_config_must_be_http(key: str, value: object) -> None:
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_config({key: value})
    assert key in str(info.value)


@pytest.mark.parametrize("value", [0, -1, -0.5, True, False, "5", None, [1]])
def test_rate_limit_must_be_positive_number(value: object) -> None:
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_config({"rate_limit": value})
    assert "rate_limit" in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_rate_limit_must_be_finite(value: float) -> None:
    # NaN is not > 0, and neither NaN nor Infinity can be stored: the config is a JSON column,
    # and PostgreSQL's JSON refuses both tokens.
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_config({"rate_limit": value})
    assert "rate_limit" in str(info.value)


@pytest.mark.parametrize("value", ["read write", ["read", 3], {"read": True}, None, [None]])
def test_scopes_must_be_list_of_strings(value: object) -> None:
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_config({"scopes": value})
    assert "scopes" in str(info.value)


def test_oauth_keys_refused_for_non_oauth_connector() -> None:
    class KeyOnly(Connector):
        name = "keyonly"
        secret_keys: ClassVar[tuple[str, ...]] = ("api_key",)
        direct_credentials: ClassVar[tuple[tuple[str, ...], ...]] = (("api_key",),)

    KeyOnly.validate_config({"base_url": "https://x.example", "rate_limit": 1})
    with pytest.raises(UsageError):
        KeyOnly.validate_config({"client_id": "x"})
    with pytest.raises(UsageError):
        KeyOnly.validate_secrets({"client_secret": "x"})


# --- secret validation --------------------------------------------------------------------------


def test_valid_secrets_accepted() -> None:
    SandboxConnector.validate_secrets(
        {"api_key": "k", "username": "u", "password": "p", "client_secret": "c"}
    )
    SandboxConnector.validate_secrets({"webhook_secret": "whsec_x"})
    SandboxConnector.validate_secrets({})


def test_unknown_secret_refused_without_its_value() -> None:
    value = "TopSecretValue-9d8e7f"
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_secrets({"api_key": "ok", "tokn": value})
    assert "'tokn'" in str(info.value)
    assert value not in str(info.value)
    assert value not in repr(info.value)


def test_empty_secret_refused() -> None:
    with pytest.raises(UsageError) as info:
        SandboxConnector.validate_secrets({"api_key": "fine-value-123", "password": ""})
    assert "password" in str(info.value)
    assert "fine-value-123" not in str(info.value)


# --- status and description ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "status"),
    [
        ({"api_key": "k"}, "active"),
        ({"username": "u", "password": "p"}, "active"),
        ({}, "needs_auth"),
        ({"username": "u"}, "needs_auth"),
        ({"password": "p"}, "needs_auth"),
        ({"api_key": ""}, "needs_auth"),
        ({"webhook_secret": "w"}, "needs_auth"),
        ({"client_secret": "c"}, "needs_auth"),
    ],
)
def test_sandbox_initial_status(secrets: dict[str, str], status: str) -> None:
    assert SandboxConnector.initial_status(secrets) == status


def test_non_oauth_connector_without_direct_credentials_is_active() -> None:
    class Open(Connector):
        name = "open"

    assert Open.initial_status({}) == "active"


def test_describe_has_contract_keys() -> None:
    info = SandboxConnector.describe()
    assert set(info) == {
        "name",
        "title",
        "actions",
        "streams",
        "webhook_scheme",
        "config_keys",
        "secret_keys",
        "auth_kinds",
        "endpoint_config_keys",
        "docs",
        "webhook_events",
    }
    assert info["name"] == "sandbox"
    assert "create_message" in [a["name"] for a in info["actions"]]
    assert "items" in [s["name"] for s in info["streams"]]
    for key in ("base_url", "rate_limit", "client_id", "authorize_url", "token_url", "scopes"):
        assert key in info["config_keys"]
    for key in ("api_key", "client_secret", "webhook_secret"):
        assert key in info["secret_keys"]
    assert len(info["config_keys"]) == len(set(info["config_keys"]))
    assert len(info["secret_keys"]) == len(set(info["secret_keys"]))
    assert json.loads(json.dumps(info)) == info
