"""Named rate budgets (tiers) a connector declares, and how their budget keys are made.

A provider that counts some endpoints apart (Slack's per-method tiers, Discord's per-route
buckets, an app-wide quota) declares them as :class:`Tier` objects in ``tiers``; an action or a
stream names its tier with ``budget=``. A request then draws from the connection's own budget
and from its tier's (:meth:`connectors.base.Connector.budgets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TIER_SCOPES", "Budget", "Tier", "bucket_budget"]

#: What a tier's budget is shared by: one connection, every connection of the connector (the
#: provider's app), or one connection's route (the provider's bucket, once it names it).
TIER_SCOPES = ("connection", "app", "route")


@dataclass(frozen=True)
class Budget:
    """One rate budget a request draws from; the fleet charges every budget of a request at
    once (:class:`coordination.Bucket`).

    Attributes:
        key: the budget's name, e.g. ``"sandbox:CONNECTION_ID"``; requests naming the same key
            share it, whichever connection or action they come from.
        rate: requests per second.
        burst: seconds of burst tolerance (``None``: half an interval).
        tier: the name of the connector's tier this budget is (``tiers``), or ``None``.
    """

    key: str
    rate: float
    burst: float | None = None
    tier: str | None = None


@dataclass(frozen=True)
class Tier:
    """One named rate budget.

    Attributes:
        rate: requests per second.
        per: ``connection`` (the budget key holds the connection), ``app`` (one budget for
            every connection of the connector) or ``route`` (one per connection and route: the
            action's or stream's name until the provider names its bucket in a header).
        burst: seconds of burst tolerance (``None``: half an interval).
    """

    rate: float
    per: str = "connection"
    burst: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError("a tier's rate must be a number of requests per second > 0.")
        if self.per not in TIER_SCOPES:
            raise ValueError(f"a tier's per must be one of {', '.join(TIER_SCOPES)}.")
        if self.burst is not None and not (math.isfinite(self.burst) and self.burst > 0):
            raise ValueError("a tier's burst must be a number of seconds > 0.")

    def key(self, connector: str, scope: str, tier: str, route: str) -> str:
        """The budget key of this tier for one request."""
        if self.per == "app":
            return f"{connector}:{tier}"
        if self.per == "route":
            return f"{connector}:{scope}:route:{route}"
        return f"{connector}:{scope}:{tier}"


def bucket_budget(tiered: Budget, bucket: str, routes: dict[str, str]) -> Budget:
    """The budget of a ``route`` tier once the provider named its bucket (Discord's
    ``X-RateLimit-Bucket``), remembering in ``routes`` (operation → bucket) that the request's
    operation, and every operation known on the same route, draw from it from now on."""
    prefix, _, route = tiered.key.rpartition(":route:")
    # The route part is an operation's name until the provider named its bucket, then the
    # bucket: every operation on it follows a new name.
    mapped = [operation for operation, known in routes.items() if known == route]
    for operation in mapped or [route]:
        routes[operation] = bucket
    return Budget(f"{prefix}:route:{bucket}", tiered.rate, tiered.burst, tiered.tier)
