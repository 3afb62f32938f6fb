"""What the built-in declarations promise, pinned: which actions are sent again after a lost
answer, GitHub's content budget and token error codes, Discord's retry window within its nonce's
lifetime, and a Teams webhook's failed delivery read as a possibly applied one."""

from __future__ import annotations

import pytest
import responses

from spark_integrations.connectors import get_connector
from spark_integrations.errors import AuthenticationError, InvalidGrantError, RetriableError

GITHUB_MUTATIONS = ("create_issue", "create_comment", "add_labels", "close_issue", "update_issue")


def test_github_state_setting_actions_are_repeatable_and_creates_are_not() -> None:
    github = get_connector("github")
    for name in ("add_labels", "close_issue", "update_issue", "get_issue"):
        assert github.resend_safe(github.get_action(name)), name
    for name in ("create_issue", "create_comment"):
        assert not github.resend_safe(github.get_action(name)), name


def test_every_github_mutation_draws_from_the_content_budget() -> None:
    github = get_connector("github")
    client = github({}, {"token": "ghp_secret"}, scope="c1")
    for name in GITHUB_MUTATIONS:
        budgets = client.budgets(github.get_action(name))
        assert any(b.tier == "content" for b in budgets), [b.key for b in budgets]
    tier = github.tiers["content"]
    # 500 an hour in all: the burst's requests plus an hour at the rate.
    assert tier.rate * (tier.burst or 0) + tier.rate * 3600 <= 500
    assert tier.rate * (tier.burst or 0) <= 80  # at most 80 a minute


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("bad_refresh_token", InvalidGrantError),
        ("incorrect_client_credentials", AuthenticationError),
    ],
)
def test_github_token_errors_in_a_200_mean_their_rfc_codes(code: str, kind: type) -> None:
    github = get_connector("github")
    url = "https://github.test/login/oauth/access_token"
    client = github.oauth_client({"client_id": "Iv1.abc", "token_url": url}, {"client_secret": "s"})
    with responses.RequestsMock() as mock:
        mock.post(url, json={"error": code, "error_description": "no"})
        with pytest.raises(kind):
            client.endpoint(pooled=False).refresh("ghr_secret")


def test_discord_retries_within_the_nonce_window() -> None:
    discord = get_connector("discord")
    assert discord.policy({}).retry_window <= 180
    assert discord.policy({"retry_window": 600}).retry_window == 600  # config may widen it


@pytest.mark.parametrize(("status", "applied"), [(500, True), (502, True), (503, False)])
def test_a_teams_webhook_delivery_failure_may_have_been_applied(status: int, applied: bool) -> None:
    hook = "https://example.webhook.office.com/webhookb2/abc/IncomingWebhook/def/ghi"
    client = get_connector("teams_webhook")({}, {"webhook_url": hook})
    body = (
        "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
        f"HTTP error {status}"
    )
    with responses.RequestsMock() as mock:
        mock.post(hook, status=200, body=body)
        with pytest.raises(RetriableError) as caught:
            client.run_action("post", {"text": "hi"})
    assert caught.value.maybe_applied is applied
    assert "ghi" not in str(caught.value)
