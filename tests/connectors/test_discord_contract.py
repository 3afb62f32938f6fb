"""The Discord connectors (bot API and webhook execution) pass the contract suite on Discord's
documented answers."""

from __future__ import annotations

import json

import requests

from spark_integrations.connectors.providers.discord import Discord, DiscordWebhook, nonce_of
from spark_integrations.testing import ConnectorContract, recordings


class TestDiscordContract(ConnectorContract):
    connector = Discord
    recordings = recordings("recordings/discord.yaml")


class TestDiscordWebhookContract(ConnectorContract):
    connector = DiscordWebhook
    recordings = recordings("recordings/discord_webhook.yaml")


def _answer(status: int, headers: dict[str, str], body: object) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update({"Content-Type": "application/json", **headers})
    response._content = json.dumps(body).encode()
    return response


def test_the_global_limit_pauses_the_connection_and_a_route_limit_its_bucket() -> None:
    """Discord's documented 429s: the global one speaks for the connection's own budget (every
    route waits), a route's for the budget keyed on the bucket it names."""
    client = Discord({}, {"bot_token": "t"}, scope="conn")
    budgets = client.budgets(client.get_action("create_message"))
    assert [b.key for b in budgets] == ["discord:conn", "discord:conn:route:create_message"]
    rate_limited = {"message": "You are being rate limited.", "retry_after": 64.57}
    global_429 = _answer(
        429,
        {"Retry-After": "65", "X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"},
        {**rate_limited, "global": True},
    )
    assert client.learning_budget(budgets, global_429) == budgets[0]
    route_429 = _answer(
        429,
        {"Retry-After": "65", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "64.57",
         "X-RateLimit-Bucket": "abcd1234", "X-RateLimit-Scope": "user"},
        {**rate_limited, "global": False},
    )  # fmt: skip
    learning = client.learning_budget(budgets, route_429)
    assert learning is not None and learning.key == "discord:conn:route:abcd1234"
    # Edits share the bucket once Discord names it for them too.
    edit = client.budgets(client.get_action("edit_message"))
    assert edit[-1].key == "discord:conn:route:edit_message"


def test_the_nonce_is_the_keys_digest_within_discords_length() -> None:
    assert nonce_of("key-1") == nonce_of("key-1") != nonce_of("key-2")
    assert len(nonce_of("x" * 500)) == 25
    assert Discord.resend_safe(Discord.get_action("create_message"))
    assert Discord.resend_safe(Discord.get_action("edit_message"))
    assert not DiscordWebhook.resend_safe(DiscordWebhook.get_action("send_message"))
