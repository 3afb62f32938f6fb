"""Calls of ``verify`` shared by the scheme tests: defaults for the query and tolerance, and a
refusal that must carry a bounded reason and a 400 or 401."""

from __future__ import annotations

from typing import Any

import pytest

from spark_integrations.webhooks.schemes import REASONS, Refused, Verified, verify
from tests.unit.webhooks.senders import TOLERANCE


def check(scheme: str, **kwargs: Any) -> Verified:
    """``verify(scheme, ...)`` with no query and the default tolerance unless given."""
    kwargs.setdefault("query", {})
    kwargs.setdefault("tolerance", TOLERANCE)
    return verify(scheme, **kwargs)


def refused(scheme: str, **kwargs: Any) -> Refused:
    """The refusal of ``check(scheme, ...)``, which must refuse with a known reason."""
    with pytest.raises(Refused) as caught:
        check(scheme, **kwargs)
    assert caught.value.reason in REASONS and caught.value.status in (400, 401)
    return caught.value
