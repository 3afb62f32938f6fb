"""The spark connector passes the contract suite on recorded answers of automagik-spark 0.3.7
(bare-array listings) and of the envelope later versions answer."""

from __future__ import annotations

from spark_integrations.connectors import get_connector
from spark_integrations.testing import ConnectorContract, recordings


class TestSparkContract(ConnectorContract):
    connector = get_connector("spark")
    recordings = recordings("recordings/spark.yaml")
