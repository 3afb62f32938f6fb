"""The Slack connector passes the contract suite on Slack's documented answers."""

from __future__ import annotations

from spark_integrations.connectors.providers.slack import Slack
from spark_integrations.testing import ConnectorContract, recordings


class TestSlackContract(ConnectorContract):
    connector = Slack
    recordings = recordings("recordings/slack.yaml")
