"""The Discord connectors (bot API and webhook execution) pass the contract suite on Discord's
documented answers."""

from __future__ import annotations

from spark_integrations.connectors.providers.discord import Discord, DiscordWebhook
from spark_integrations.testing import ConnectorContract, recordings


class TestDiscordContract(ConnectorContract):
    connector = Discord
    recordings = recordings("recordings/discord.yaml")


class TestDiscordWebhookContract(ConnectorContract):
    connector = DiscordWebhook
    recordings = recordings("recordings/discord_webhook.yaml")
