"""tasks.deadletters.redact: secret-looking keys are masked at any depth; ids and params stay."""

from __future__ import annotations

import copy

import pytest

from spark_integrations.tasks.deadletters import REDACTED, redact


def test_nested_secrets_masked_ids_and_params_kept() -> None:
    kwargs = {
        "connection_id": "c-123",
        "action": "create_message",
        "idempotency_key": "idem-1",
        "sync_id": "s-9",
        "params": {
            "text": "hello",
            "count": 3,
            "token": "t0k3n",
            "nested": {
                "client_secret": "cs-value",
                "id": 7,
                "headers": {"Authorization": "Bearer abc", "Accept": "application/json"},
            },
            "items": [{"password": "pw", "name": "x"}, ("api_key", "plain tuple item")],
        },
    }
    original = copy.deepcopy(kwargs)
    out = redact(kwargs)

    assert kwargs == original  # the input is not changed
    assert out["connection_id"] == "c-123"
    assert out["action"] == "create_message"
    assert out["idempotency_key"] == "idem-1"
    assert out["sync_id"] == "s-9"
    params = out["params"]
    assert params["text"] == "hello"
    assert params["count"] == 3
    assert params["token"] == REDACTED
    assert params["nested"]["client_secret"] == REDACTED
    assert params["nested"]["id"] == 7
    assert params["nested"]["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert params["items"][0] == {"password": REDACTED, "name": "x"}
    # Values are not keys: a string in a list is kept as it is.
    assert params["items"][1] == ["api_key", "plain tuple item"]
    for secret in ("t0k3n", "cs-value", "Bearer abc", "pw"):
        assert secret not in repr(out)


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "access_token",
        "refresh_token",
        "client_secret",
        "webhook_secret",
        "password",
        "passwd",
        "api_key",
        "api-key",
        "apikey",
        "X-Api-Key",
        "API_KEY",
        "Authorization",
        "authorization",
        "signature",
    ],
)
def test_secret_looking_keys_masked(key: str) -> None:
    assert redact({key: "value-xyz"}) == {key: REDACTED}


def test_whole_subtree_under_secret_key_masked() -> None:
    out = redact({"secrets": {"id": "kept?", "nested": ["a"]}})
    assert out == {"secrets": REDACTED}


@pytest.mark.parametrize("value", [None, 1, 2.5, True, "text", []])
def test_scalars_pass_through(value: object) -> None:
    assert redact(value) == value


def test_result_is_json_friendly() -> None:
    import json

    out = redact({1: {"token": "x"}, "list": ({"a": 1},)})
    assert json.loads(json.dumps(out)) == {"1": {"token": REDACTED}, "list": [{"a": 1}]}


@pytest.mark.parametrize("key", ["private_key", "credentials", "cookie", "db_pass"])
def test_more_secret_names_are_masked(key: str) -> None:
    assert redact({key: "v"}) == {key: REDACTED}


@pytest.mark.parametrize("key", ["page_token", "next_token", "max_tokens", "idempotency_key"])
def test_parameters_that_merely_mention_tokens_are_kept(key: str) -> None:
    assert redact({key: "v"}) == {key: "v"}
