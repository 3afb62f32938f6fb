"""Answers lost after the work was done: a mixin of emulators (before :class:`Emulator`).

The common ``drop`` injection (:mod:`tests.emulators.common`) loses a request before it is
served: nothing happened at the provider. Losing the answer of a request that WAS served (a
message stored, then the connection dropped, or the answer held while the client's worker is
killed) is the other half of "the outcome is unknown", and the case a look before resending
exists for.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.emulators.common import Emulator, Request, Response

__all__ = ["HOLD_LIMIT", "LostAnswers"]

#: The longest a held answer waits for release() before its connection is closed anyway.
HOLD_LIMIT = 300.0


class LostAnswers(Emulator):
    """Serve a route's requests, then lose their answers (:meth:`lose_answers`)."""

    def __init__(self) -> None:
        self._losses: list[dict[str, Any]] = []
        self._released = threading.Event()
        self.held = 0
        super().__init__()

    def lose_answers(self, route: str, *, times: int = 1, hold: bool = False) -> None:
        """Serve the next ``times`` successful requests (HTTP 200, not ``ok: false``) of
        ``route``, then lose their answers: the connection closes without one, at once, or
        (``hold``) once :meth:`release` is called; ``stats()["held"]`` counts those waiting."""
        with self.lock:
            if hold:
                self._released.clear()
            self._losses.append({"route": route, "times": times, "hold": hold})

    def release(self) -> None:
        """Let held answers go (their connections close without them)."""
        self._released.set()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        with self.lock:
            out["held"] = self.held
        return out

    def handle(self, req: Request) -> Response:
        response = super().handle(req)
        body = response.body if isinstance(response.body, dict) else {}
        if response.status != 200 or body.get("ok") is False:
            return response
        route, _ = self._match(req)
        with self.lock:
            loss = next((x for x in self._losses if route and x["route"] == route.name), None)
            if loss is None:
                return response
            loss["times"] -= 1
            if loss["times"] <= 0:
                self._losses.remove(loss)
            self.counters["answers_lost"] += 1
            if loss["hold"]:
                self.held += 1
        if loss["hold"]:
            self._released.wait(HOLD_LIMIT)
            with self.lock:
                self.held -= 1
        return Response(drop=True)
