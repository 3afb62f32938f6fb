"""Look before resend: what a provider's own data says about a request whose answer was lost.

A provider that takes no idempotency key (Slack's ``chat.postMessage``, spark's workflow runs)
cannot be asked to deduplicate a request sent twice. When the fleet cannot tell whether such a
request took effect (its worker was lost mid-request, or its answer never came), it asks the
connector to look in the provider's data (a channel's recent history, a listing of runs) for
what the request would have made, before sending it again:

- ``found``: it took effect; ``data`` is what the call returns, as the action's answer would
  have been;
- ``absent``: the provider's data was read in full and holds no trace of it: it is sent;
- ``unknown``: the look could not tell (an error, a listing too long to read, nothing to match
  on): it is not sent again, and the call ends as ``outcome_unknown``.

A connector offers this with :meth:`connectors.base.Connector.lookable` and
:meth:`connectors.base.Connector.look`; the fleet's call engine (:mod:`tasks.calls`) decides
when to look and sends the look through the fleet's guards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LOOK_MARGIN", "Look"]

#: Seconds a look reaches back before the call's first attempt: the fleet's clock and the
#: provider's may disagree, and a request's record may carry the time it arrived, not sent.
LOOK_MARGIN = 60.0


@dataclass(frozen=True)
class Look:
    """What a look at the provider's data found.

    Attributes:
        outcome: ``found``, ``absent`` or ``unknown`` (see the module docstring).
        data: with ``found``, what the call's result ``data`` becomes.
        detail: one phrase saying where it looked (``"the history of Slack channel C0123
            since 1700000000.000000"``), quoted in an ``outcome_unknown`` dead letter.
    """

    outcome: Literal["found", "absent", "unknown"]
    data: Any = None
    detail: str = ""
