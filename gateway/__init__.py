"""The gateway: the fleet's HTTP service (CONTRACT.md, "Gateway (HTTP)").

It stands on top of the store and the connectors, beside ``workers/``: health and readiness
probes, Prometheus metrics, an OpenAPI document, and the OAuth 2.0 connect flow (the signed link
``spark-integrations connect`` prints, the redirect to the provider, the callback that stores the
tokens). ``spark-integrations gateway`` serves it with uvicorn (:mod:`gateway.server`).
"""

from __future__ import annotations

from spark_integrations.gateway.app import create_app
from spark_integrations.gateway.flows import ConnectFlows, FlowRefusedError, StartedFlow
from spark_integrations.gateway.links import Signer

__all__ = ["ConnectFlows", "FlowRefusedError", "Signer", "StartedFlow", "create_app"]
