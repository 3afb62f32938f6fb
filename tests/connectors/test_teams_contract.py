"""The teams and teams_webhook connectors pass the contract suite on Microsoft's documented
answers (tests/connectors/recordings/teams.yaml, teams_webhook.yaml)."""

from __future__ import annotations

from spark_integrations.connectors.providers.teams import Teams, TeamsWebhook
from spark_integrations.testing import ConnectorContract, recordings


class TestTeamsContract(ConnectorContract):
    connector = Teams
    recordings = recordings("recordings/teams.yaml")


class TestTeamsWebhookContract(ConnectorContract):
    connector = TeamsWebhook
    recordings = recordings("recordings/teams_webhook.yaml")
