"""A secret URL (incoming webhooks: the whole URL is the credential) meets the outbound URL
policy when a connection stores it, in one sentence that never quotes it."""

from __future__ import annotations

import pytest

from spark_integrations.connectors import get_connector
from spark_integrations.errors import UsageError


@pytest.mark.parametrize("provider", ["teams_webhook", "discord_webhook"])
@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook/s3cr3t",
        "ftp://example.com/hook/s3cr3t",
        "not a url s3cr3t",
    ],
)
def test_a_secret_url_outside_the_policy_is_refused_when_stored(provider: str, url: str) -> None:
    cls = get_connector(provider)
    with pytest.raises(UsageError) as caught:
        cls.validate_secrets({"webhook_url": url})
    message = str(caught.value)
    assert "webhook_url" in message and "https://" in message
    assert "s3cr3t" not in message


@pytest.mark.parametrize("provider", ["teams_webhook", "discord_webhook"])
@pytest.mark.parametrize(
    "url", ["https://example.com/hook/s3cr3t", "http://127.0.0.1:9/hook/s3cr3t"]
)
def test_an_https_or_loopback_secret_url_is_accepted(provider: str, url: str) -> None:
    get_connector(provider).validate_secrets({"webhook_url": url})
