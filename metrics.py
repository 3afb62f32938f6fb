"""The fleet's domain metrics, counted from every process (workers, beat, gateway, command line).

Interface used across the fleet (the implementation is being written):

``count(family, amount=1.0, **labels)`` adds ``amount`` to a fleet-wide counter. ``family`` is a
short name (``"webhooks"`` for ``spark_integrations_webhooks_total``); labels are bounded strings
(never a record id, task id or event id). It never raises and never blocks the work it counts.
"""

from __future__ import annotations

__all__ = ["count"]


def count(family: str, amount: float = 1.0, /, **labels: str) -> None:
    """Add ``amount`` to the counter ``family`` with ``labels`` (best effort, never raises)."""
    del family, amount, labels
