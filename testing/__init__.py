"""The contract test suite every connector passes (pytest; install the ``[testing]`` extra).

A connector supplies recorded responses (the provider's documented bodies and headers) and
subclasses :class:`ConnectorContract`; the suite checks its metadata, each auth kind, each
action's request, each stream's pages and order, cycle detection, error classification,
rate-limit headers, and that no secret leaks. See ``docs/writing-a-connector.md``.

The fleet's runtime never imports this package.
"""

from __future__ import annotations

from spark_integrations.testing.contract import ConnectorContract
from spark_integrations.testing.recordings import Recordings, recordings

__all__ = ["ConnectorContract", "Recordings", "recordings"]
