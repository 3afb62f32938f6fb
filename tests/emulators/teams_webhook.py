"""Teams incoming webhooks on loopback: the URL is the secret; POST a card to it.

From Microsoft's documentation ("Create an Incoming Webhook", "Create and send messages",
"Rate limiting for connectors"):

- Office 365 connector webhooks, ``POST /webhookb2/{group}@{tenant}/IncomingWebhook/{id}/{owner}``
  with a JSON ``MessageCard`` (``text`` or ``summary``) or an Adaptive Card message
  (``{"type": "message", "attachments": [...]}``), answer ``200`` with the text ``1``.
- Their limits are fixed windows per webhook (4 per second, 60 per 30 s, 100 per hour, 150 per
  2 hours, 1800 per day) and, as documented, "Connectors do not throw 429s": the throttled
  answer is a 200 whose body says ``Microsoft Teams endpoint returned HTTP error 429``.
- Messages are limited to 28 KB. Payload errors answer 400 with a text body (commonly
  observed texts, which Microsoft does not document).
- Workflows (Power Automate) webhook URLs, ``POST /workflows/{id}/triggers/manual/paths/invoke
  ?api-version=...&sp=...&sv=1.0&sig=...`` (the signature is the secret), accept the request
  with ``202 Accepted`` and an empty body and run the flow later.
- Injected kinds: ``throttled`` (the 200-with-429-text answer), ``unavailable`` (503),
  ``server_error`` (500), ``drop``.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

from tests.emulators.common import Emulator, Limiter, Request, Response, Route
from tests.emulators.teams import TENANT_ID

__all__ = ["LIMIT_WINDOWS", "TeamsWebhookEmulator"]

#: The documented connector limits: (seconds, requests allowed in that window).
LIMIT_WINDOWS = ((1, 4), (30, 60), (3600, 100), (7200, 150), (86400, 1800))
MAX_MESSAGE_BYTES = 28 * 1024
THROTTLED_TEXT = (
    "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error "
    "429 with ContextId tcid=0,server=msgapi-canary-eus2-0-17,cv=emulated.0.."
)
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}


class TeamsWebhookEmulator(Emulator):
    """Incoming webhooks of Teams channels: Office 365 connectors and Workflows."""

    name = "teams_webhook"

    def __init__(self, *, windows: tuple[tuple[float, int], ...] = LIMIT_WINDOWS) -> None:
        self.windows = windows
        self._limiters = [Limiter(count, seconds) for seconds, count in windows]
        self.hooks: set[str] = set()
        self.posts: list[dict[str, Any]] = []
        super().__init__()

    def reset_state(self) -> None:
        """Forget the posted messages (the webhooks stay)."""
        self.posts.clear()

    def add_webhook(self, kind: str = "connector") -> str:
        """A new webhook URL (``connector`` or ``workflow``); the whole URL is the secret."""
        if kind == "workflow":
            flow, sig = uuid.uuid4().hex, secrets.token_urlsafe(32)
            with self.lock:
                self.hooks.add(f"workflow:{flow}:{sig}")
            return (
                f"{self.url}/workflows/{flow}/triggers/manual/paths/invoke"
                f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}"
            )
        group, hook, owner = uuid.uuid4(), uuid.uuid4().hex, uuid.uuid4()
        path = f"/webhookb2/{group}@{TENANT_ID}/IncomingWebhook/{hook}/{owner}"
        with self.lock:
            self.hooks.add(f"connector:{path}")
        return self.url + path

    def routes(self) -> list[Route]:
        """The two kinds of webhook URL."""
        return [
            Route("POST", r"/webhookb2/[^/]+@[^/]+/IncomingWebhook/[^/]+/[^/]+", self.connector,
                  "connector"),
            Route("POST", r"/workflows/(?P<flow>[^/]+)/triggers/manual/paths/invoke",
                  self.workflow, "workflow"),
        ]  # fmt: skip

    def connector(self, req: Request) -> Response:
        """An Office 365 connector webhook: ``1``, or a text error; 429 inside a 200."""
        with self.lock:
            known = f"connector:{req.raw_path}" in self.hooks
        if not known:
            return Response(404, "Webhook Not Found", dict(_TEXT))
        for limiter in self._limiters:
            allowed, _, _ = limiter.hit(req.raw_path)
            if not allowed:
                with self.lock:
                    self.counters["rate_limited"] += 1
                return Response(200, THROTTLED_TEXT, dict(_TEXT))
        if len(req.body) > MAX_MESSAGE_BYTES:
            return Response(413, "Webhook message delivery failed with error: Microsoft Teams "
                            "endpoint returned HTTP error 413", dict(_TEXT))  # fmt: skip
        try:
            payload = json.loads(req.body)
        except ValueError:
            return Response(400, "Bad payload received by generic incoming webhook.", dict(_TEXT))
        card = isinstance(payload, dict) and (
            payload.get("text") or payload.get("summary") or payload.get("attachments")
        )
        if not card:
            return Response(400, "Summary or Text is required.", dict(_TEXT))
        self._posted(req, payload)
        return Response(200, "1", dict(_TEXT))

    def workflow(self, req: Request, flow: str) -> Response:
        """A Workflows trigger URL: 202 Accepted, empty body (the flow runs later)."""
        with self.lock:
            known = f"workflow:{flow}:{req.arg('sig')}" in self.hooks
        if not known:
            body = {"error": {"code": "WorkflowNotFound",
                              "message": f"The workflow '{flow}' could not be found."}}  # fmt: skip
            return Response.json(body, 404)
        try:
            payload = json.loads(req.body)
        except ValueError:
            body = {"error": {"code": "InvalidRequestContent",
                              "message": "The request content is not valid JSON."}}  # fmt: skip
            return Response.json(body, 400)
        self._posted(req, payload)
        return Response(202, b"", {})

    def _posted(self, req: Request, payload: Any) -> None:
        with self.lock:
            self.posts.append({"path": req.path, "payload": payload})
            self.counters["created"] += 1

    def injected(self, kind: str, req: Request) -> Response:
        """What each error class looks like on a webhook."""
        if kind == "throttled":
            return Response(200, THROTTLED_TEXT, dict(_TEXT))
        if kind == "unavailable":
            return Response(503, "Service Unavailable", {**_TEXT, "Retry-After": "2"})
        if kind == "server_error":
            return Response(500, "Internal Server Error", dict(_TEXT))
        return super().injected(kind, req)
