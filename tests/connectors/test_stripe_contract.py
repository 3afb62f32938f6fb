"""The Stripe connector passes the contract suite on Stripe's documented answers, its object
bodies read from Stripe's published fixtures (../shared/provider-specs/stripe_fixtures3.json:
the tests that need them skip without the folder, and fail under CI=true)."""

from __future__ import annotations

from spark_integrations.connectors.providers.stripe import Stripe
from spark_integrations.testing import ConnectorContract, recordings


class TestStripeContract(ConnectorContract):
    connector = Stripe
    recordings = recordings("recordings/stripe.yaml")
