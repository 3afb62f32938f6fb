"""A provider that echoes a credential in its error (a key in a message, a webhook token in a
path it quotes) never puts it in the error the fleet keeps: the connection's secrets are masked
in every provider error a client raises, whether an error rule or the generic rules made it."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.manifest import load_manifest
from spark_integrations.errors import ProviderError

KEY = "sk-live-Zq8c1VfL0pW3"
HOOK_TOKEN = "tKn9QwErTy7uIoPaSdFgHjKlZxCvBnM0"
HOOK = f"https://hooks.echo.test/api/webhooks/123/{HOOK_TOKEN}"

KEYED = """\
name: keyed
base_url: https://api.echo.test
auth: {bearer: {secret: api_key}}
errors:
  message: error.message
  rules:
    - when: {status: 402}
      then: fatal
actions:
  - {name: charge, method: POST, path: /charges, params: {amount: integer}}
"""
HOOKED = """\
name: hooked
auth: {kinds: [secret_url], secret_url: {secret: url}}
actions:
  - {name: send, method: POST, path: /, params: {text: string}}
"""


def build(tmp_path: Path, text: str) -> type[Connector]:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_manifest(path)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.mark.parametrize("status", [402, 400, 500])
def test_a_key_the_provider_echoes_is_masked(
    tmp_path: Path, session: requests.Session, status: int
) -> None:
    client = build(tmp_path, KEYED)({}, {"api_key": KEY}, session=session, scope="c")
    with responses.RequestsMock() as rsps:
        rsps.post(
            "https://api.echo.test/charges",
            status=status,
            json={"error": {"message": f"Invalid API key provided: {KEY}"}},
        )
        with pytest.raises(ProviderError) as info:
            client.run_action("charge", {"amount": 5})
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert f"[keyed: status {status}" in str(info.value)


def test_a_webhook_token_the_provider_quotes_is_masked(
    tmp_path: Path, session: requests.Session
) -> None:
    client = build(tmp_path, HOOKED)({}, {"url": HOOK}, session=session, scope="c")
    with responses.RequestsMock() as rsps:
        rsps.post(HOOK, status=404, body=f"no webhook at /api/webhooks/123/{HOOK_TOKEN}")
        with pytest.raises(ProviderError) as info:
            client.run_action("send", {"text": "hi"})
    assert HOOK_TOKEN not in str(info.value)
    assert "[hooked: status 404" in str(info.value)
