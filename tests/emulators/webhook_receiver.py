"""A receiver of Standard Webhooks on loopback: what a subscriber of the fleet's events runs.

From the Standard Webhooks specification (standardwebhooks.com, ``spec/standard-webhooks.md``):

- A webhook is a ``POST`` with headers ``webhook-id`` (the message's id, the same on every
  retry of it), ``webhook-timestamp`` (seconds since the epoch) and ``webhook-signature``
  (space-separated ``v1,<base64>`` signatures); the body is JSON, ``{"type", "timestamp",
  "data"}``. The receiver verifies the signature and the timestamp's tolerance (the
  ``standardwebhooks`` package's ``Webhook.verify``, the reference implementation), answers
  2xx once it has the message, and drops a message whose ``webhook-id`` it has seen already.

``POST /hooks/NAME`` verifies with the secret set for ``NAME`` (:meth:`WebhookReceiver.expect`):
a verified message answers ``204`` (a repeat ``200``), anything else ``401``. Every request is
recorded (:meth:`Emulator.recorded`), the verified messages by name (:meth:`accepted`).
:meth:`fail` makes one receiver answer an error status for its next requests (before
verification, as a receiver that is down); :meth:`hold` keeps each request unanswered until
:meth:`release`.

Shares no code with the fleet.
"""

from __future__ import annotations

import threading
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.emulators.common import Emulator, Request, Response, Route

__all__ = ["WebhookReceiver"]

#: Longest a held request waits for release (a test that forgets to release still ends).
HOLD_MAX = 120.0


class WebhookReceiver(Emulator):
    """Receivers of Standard Webhooks, one per name, each with its own secret."""

    name = "webhook_receiver"

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.seen: set[tuple[str, str]] = set()
        self._released = threading.Event()
        self._released.set()
        self.holding = 0
        self.failing: dict[str, list[int]] = {}
        super().__init__()

    def routes(self) -> list[Route]:
        return [Route("POST", r"/hooks/(?P<hook>[\w-]+)", self.receive, "receive")]

    def reset_state(self) -> None:
        self.messages.clear()
        self.seen.clear()

    def hook_url(self, hook: str) -> str:
        """Where the receiver ``hook`` listens."""
        return f"{self.url}/hooks/{hook}"

    def expect(self, hook: str, secret: str) -> None:
        """Verify posts to ``hook`` with ``secret``."""
        with self.lock:
            self.secrets[hook] = secret

    def accepted(self, hook: str) -> list[dict[str, Any]]:
        """The verified messages ``hook`` took, repeats dropped: ``{"id", "type",
        "timestamp", "data"}`` each."""
        with self.lock:
            return [dict(m) for m in self.messages.get(hook, [])]

    def attempts(self, hook: str) -> list[dict[str, Any]]:
        """Every request to ``hook`` (verified or not, answered or failed on purpose)."""
        return [r for r in self.recorded("receive") if r["path"] == f"/hooks/{hook}"]

    def fail(self, hook: str, status: int, times: int) -> None:
        """Answer ``status`` to the next ``times`` requests to ``hook`` (0: stop failing)."""
        with self.lock:
            self.failing[hook] = [status, times]

    def hold(self) -> None:
        """Answer nothing until :meth:`release` (a receiver hanging)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def receive(self, req: Request, hook: str) -> Response:
        if not self._released.is_set():
            with self.lock:
                self.holding += 1
            self._released.wait(HOLD_MAX)
        with self.lock:
            failing = self.failing.get(hook)
            if failing and failing[1] > 0:
                failing[1] -= 1
                return Response.json({"error": "failing on purpose"}, failing[0])
        secret = self.secrets.get(hook)
        if secret is None:
            return Response.json({"error": f"no receiver {hook}"}, 404)
        try:
            payload = Webhook(secret).verify(req.body, req.headers)
        except WebhookVerificationError as exc:
            with self.lock:
                self.counters["refused"] += 1
            return Response.json({"error": str(exc)}, 401)
        message_id = req.headers["webhook-id"]
        with self.lock:
            if (hook, message_id) in self.seen:
                self.counters["repeats"] += 1
                return Response(200)
            self.seen.add((hook, message_id))
            self.messages.setdefault(hook, []).append({"id": message_id, **payload})
        return Response(204)
