"""The Stripe connector's entry point: declared in ``connectors/manifests/stripe.yaml``, with no
Python hook (keys, form bodies, idempotency keys, lists, errors and Stripe-Should-Retry are all
data)."""

from __future__ import annotations

from spark_integrations.connectors.manifest import declared

__all__ = ["Stripe"]

Stripe = declared(__file__, "stripe.yaml")
