"""The fleet's store: SQLAlchemy models, engines and sessions, and secrets at rest.

The ground floor of the fleet: it imports no other package of ours (only the shared modules
``constants``, ``errors``, ``forks`` and ``settings``).
"""

from __future__ import annotations

from spark_integrations.store.crypto import SecretBox
from spark_integrations.store.engine import (
    dispose_engines,
    engine_for,
    session_scope,
    store_error,
)
from spark_integrations.store.models import (
    Base,
    Connection,
    DeadLetter,
    OAuthFlow,
    OAuthToken,
    ParkedCall,
    Record,
    SyncCursor,
    SyncDefinition,
    SyncRun,
    WebhookEvent,
)

__all__ = [
    "Base",
    "Connection",
    "DeadLetter",
    "OAuthFlow",
    "OAuthToken",
    "ParkedCall",
    "Record",
    "SecretBox",
    "SyncCursor",
    "SyncDefinition",
    "SyncRun",
    "WebhookEvent",
    "dispose_engines",
    "engine_for",
    "session_scope",
    "store_error",
]
