"""The sandbox connector passes the contract suite on its recorded answers."""

from __future__ import annotations

from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.testing import ConnectorContract, recordings


class TestSandboxContract(ConnectorContract):
    connector = SandboxConnector
    recordings = recordings("recordings/sandbox.yaml")
