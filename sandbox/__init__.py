"""A fake SaaS provider on loopback, for the fleet's tests, benchmarks and demo.

A real HTTP/1.1 server (standard library only, sharing no code with the fleet, so tests of the
fleet's client prove something) with OAuth 2.0 (PKCE, rotating refresh tokens), API keys and
Basic auth, per-credential rate limits, injected faults, a paginated ``items`` dataset that
churns, idempotent message creation and signed webhooks. Run it with
``python -m spark_integrations.sandbox`` or
``spark-integrations sandbox``; in tests::

    with SandboxServer(SandboxOptions(port=0, api_key="k")) as srv:
        ...  # srv.url
"""

from __future__ import annotations

from spark_integrations.sandbox.options import (
    FAULT_KINDS,
    FLAGS,
    SandboxOptions,
    options_from_flags,
)
from spark_integrations.sandbox.server import SandboxServer, serve

__all__ = ["FAULT_KINDS", "FLAGS", "SandboxOptions", "SandboxServer", "options_from_flags", "serve"]
