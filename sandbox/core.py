"""The sandbox's state and background threads, gathered in one object the handlers share.

One :class:`threading.Lock` guards all shared state (counters, dataset, tokens, messages, rate
buckets, the random generator); each piece holds it only for in-memory work.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from spark_integrations.sandbox.dataset import ChurnThread, Dataset
from spark_integrations.sandbox.faults import FaultInjector
from spark_integrations.sandbox.hold import Gate
from spark_integrations.sandbox.oauth import TokenStore
from spark_integrations.sandbox.options import SandboxOptions
from spark_integrations.sandbox.state import MessageStore, RateLimiter, Stats
from spark_integrations.sandbox.webhooks import WebhookSender

__all__ = ["Sandbox"]


class Sandbox:
    """Everything a request handler needs: options, state, and the churn and webhook threads.

    Attributes:
        options: The options it was built with.
        lock: The one lock of all shared state.
        stopping: Set when the server stops; slow faults wait on it so stopping is prompt.
        gate: Where held requests wait (``POST /_sandbox/hold``).
        stats: Counters of ``/_sandbox/stats``.
        dataset: The ``items`` records.
        tokens: OAuth codes and tokens.
        messages: Messages and idempotency records.
        limiter: Per-credential token buckets, or None without ``--rate-limit``.
        faults: The fault injector.
        webhooks: The webhook sender, or None without ``--webhook-url``.
    """

    def __init__(self, options: SandboxOptions) -> None:
        """Build the state and generate the dataset; threads start with :meth:`start`."""
        self.options = options
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.gate = Gate(self.stopping)
        self.rng = random.Random(options.seed)
        self.stats = Stats(self.lock)
        self.dataset = Dataset(options.records, self.rng, self.lock, self.stats)
        self.tokens = TokenStore(options, self.lock, self.stats)
        self.messages = MessageStore(self.lock, self.stats)
        self.limiter = (
            RateLimiter(options.rate_limit, options.burst, self.lock)
            if options.rate_limit > 0
            else None
        )
        self.faults = FaultInjector(
            options.fault_rate, options.fault_kinds, self.rng, self.lock, self.stats
        )
        self.webhooks: WebhookSender | None = None
        if options.webhook_url and options.webhook_secret:
            self.webhooks = WebhookSender(options.webhook_url, options.webhook_secret, self.stats)
        self._churn = ChurnThread(self.dataset, options.churn) if options.churn > 0 else None

    def start(self) -> None:
        """Start the churn and webhook threads (those configured)."""
        if self._churn is not None:
            self._churn.start()
        if self.webhooks is not None:
            self.webhooks.start()

    def stop(self) -> None:
        """Wake sleeping slow faults, stop and join the background threads."""
        self.stopping.set()
        self.gate.release_all()
        if self._churn is not None:
            self._churn.stop()
        if self.webhooks is not None:
            self.webhooks.stop()

    def stats_snapshot(self) -> dict[str, Any]:
        """Counters plus ``records`` (the dataset size), pending webhook deliveries and the
        requests ``held`` right now."""
        data: dict[str, Any] = dict(self.stats.snapshot())
        data["records"] = len(self.dataset)
        data["held"] = self.gate.held
        data["webhooks_pending"] = self.webhooks.pending() if self.webhooks else 0
        return data
