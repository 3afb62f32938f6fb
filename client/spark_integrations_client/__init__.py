"""A small client for the automagik-spark-integrations fleet's Celery task contract.

Sends ``integrations.call`` and ``integrations.sync`` by name on their contract queues, with
arguments checked before anything is sent, results as frozen dataclasses and failures as
exceptions. It depends on Celery alone and imports nothing of the fleet.

    from spark_integrations_client import IntegrationsClient

    with IntegrationsClient("redis://127.0.0.1:6379/0") as client:
        result = client.call(connection_id, "create_message", {"text": "hi"})
        print(result.data)
"""

from __future__ import annotations

from spark_integrations_client.client import IntegrationsClient, PendingCall, PendingSync
from spark_integrations_client.errors import (
    BrokerUnavailableError,
    CallFailedError,
    IntegrationsClientError,
    ResultTimeoutError,
    SyncFailedError,
    TaskFailedError,
    UnexpectedResultError,
    UnknownConnectionError,
    UnknownSyncError,
)
from spark_integrations_client.results import CallResult, SyncResult, SyncSkipped

__all__ = [
    "BrokerUnavailableError",
    "CallFailedError",
    "CallResult",
    "IntegrationsClient",
    "IntegrationsClientError",
    "PendingCall",
    "PendingSync",
    "ResultTimeoutError",
    "SyncFailedError",
    "SyncResult",
    "SyncSkipped",
    "TaskFailedError",
    "UnexpectedResultError",
    "UnknownConnectionError",
    "UnknownSyncError",
    "__version__",
]

__version__ = "0.1.0"
