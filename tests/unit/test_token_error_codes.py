"""A provider's own token-endpoint error codes read as the RFC 6749 codes they mean: Slack answers
a refused refresh token as a 200 ``{"ok": false, "error": "invalid_refresh_token"}``, which must be
a refused grant (a person reconnects), not a token that never came (retried)."""

from __future__ import annotations

import pytest
import responses

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.grants import TokenEndpoint
from spark_integrations.errors import (
    AuthenticationError,
    FatalError,
    InvalidGrantError,
    RetriableError,
)

TOKEN_URL = "https://slack.test/api/oauth.v2.access"


def _slack_endpoint() -> TokenEndpoint:
    cls = get_connector("slack")
    config = {"client_id": "123.456", "token_url": TOKEN_URL}
    return cls.oauth_client(config, {"client_secret": "shh-secret"}).endpoint(pooled=False)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("invalid_refresh_token", InvalidGrantError),
        ("bad_client_secret", AuthenticationError),
        ("invalid_grant_type", FatalError),
    ],
)
def test_slack_token_errors_in_a_200_mean_their_rfc_codes(code: str, kind: type) -> None:
    endpoint = _slack_endpoint()
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, json={"ok": False, "error": code})
        with pytest.raises(kind) as caught:
            endpoint.refresh("xoxe-1-refresh-secret")
    assert "refresh-secret" not in str(caught.value)
    assert "shh-secret" not in str(caught.value)


def test_a_code_mapped_in_an_error_status_is_read_the_same() -> None:
    endpoint = _slack_endpoint()
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, status=400, json={"ok": False, "error": "invalid_refresh_token"})
        with pytest.raises(InvalidGrantError):
            endpoint.refresh("xoxe-1-refresh-secret")


def test_an_unmapped_code_stays_a_token_that_never_came() -> None:
    endpoint = _slack_endpoint()
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, json={"ok": False, "error": "something_new"})
        with pytest.raises(RetriableError) as caught:
            endpoint.refresh("xoxe-1-refresh-secret")
    assert caught.value.maybe_applied


def test_without_a_mapping_codes_are_read_as_given() -> None:
    endpoint = TokenEndpoint(TOKEN_URL, "id", "secret")
    with responses.RequestsMock() as mock:
        mock.post(TOKEN_URL, json={"ok": False, "error": "invalid_refresh_token"})
        with pytest.raises(RetriableError):
            endpoint.refresh("r")
