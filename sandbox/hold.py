"""Held requests: the provider stops answering until released.

Tests that need a request *in flight* at a moment of their choosing use it, instead of hoping a
slow answer lasts long enough: a worker killed mid-request, an idempotent twin arriving while
the first call is still out, a refresh whose answer never comes back. ``POST /_sandbox/hold``
``{"scopes": ["api"]}`` holds every request of those scopes where it stands (before it is
counted, authenticated or has any effect); ``{"scopes": []}`` lets them all go on. The number
held right now is ``held`` in ``GET /_sandbox/stats``.

Scopes: ``api`` (everything under ``/v1/``) and ``token`` (``POST /oauth/token``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["HOLD_SCOPES", "Gate"]

HOLD_SCOPES: tuple[str, ...] = ("api", "token")

#: Seconds between two looks at the stop event while held (a stop also wakes held requests).
_POLL = 0.5


class Gate:
    """Where requests of the held scopes wait until released (or the sandbox stops)."""

    def __init__(self, stopping: threading.Event) -> None:
        """Nothing held yet; ``stopping`` is the sandbox's stop event."""
        self._cond = threading.Condition()
        self._scopes: frozenset[str] = frozenset()
        self._waiting = 0
        self._stopping = stopping

    def hold(self, scopes: Iterable[str]) -> None:
        """Hold exactly these scopes from now on; scopes no longer named are released.

        Raises:
            ValueError: a scope that is not one of :data:`HOLD_SCOPES`.
        """
        wanted = frozenset(scopes)
        unknown = wanted - set(HOLD_SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes {sorted(unknown)}; use {', '.join(HOLD_SCOPES)}")
        with self._cond:
            self._scopes = wanted
            self._cond.notify_all()

    def release_all(self) -> None:
        """Let every held request go on."""
        self.hold(())

    @property
    def scopes(self) -> list[str]:
        """The scopes held now, sorted."""
        with self._cond:
            return sorted(self._scopes)

    @property
    def held(self) -> int:
        """How many requests are waiting right now."""
        with self._cond:
            return self._waiting

    def pass_through(self, scope: str) -> None:
        """Return at once unless ``scope`` is held; else wait until it is released."""
        with self._cond:
            if scope not in self._scopes:
                return
            self._waiting += 1
            try:
                while scope in self._scopes and not self._stopping.is_set():
                    self._cond.wait(_POLL)
            finally:
                self._waiting -= 1
