"""``POST /webhooks/{provider}/{connection_id}``: the gateway's side of webhook intake.

The body is read here, on the event loop, with a hard limit
(``SPARK_INTEGRATIONS_WEBHOOK_MAX_BYTES``): a ``Content-Length`` over it is refused before
anything is read, and a body sent without one is counted while it streams and refused (413) as
soon as it passes the limit; nothing more of it is read. The rest, verifying, storing and
sending, is blocking work done in one thread by :class:`webhooks.intake.Intake`.

Tasks are sent with the gateway's one Celery client app (the one ``/spark`` uses: one producer
pool, built once), each send trying once more at most, so a broker that does not answer costs a
request about a second, once: intake then skips sends for a few seconds, and the sweep sends
what was stored meanwhile.

Statuses (CONTRACT.md, "Gateway"): 202 once the event is durably stored (a repeated delivery
too, with ``duplicate`` true); 401 bad or missing signature, or a timestamp outside tolerance;
400 malformed; 404 no such connection for that provider, or no intake for its connector; 413
too large; 503 store unreachable or secret unreadable. Never 2xx before the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from celery import Celery
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from spark_integrations import metrics
from spark_integrations.settings import Settings
from spark_integrations.store.crypto import SecretBox
from spark_integrations.webhooks.intake import Intake, Reply, SessionFactory, provider_label
from spark_integrations.webhooks.sweep import enqueue

__all__ = ["SEND_RETRY_POLICY", "WebhookEndpoint"]

logger = logging.getLogger("gateway")

#: One more try after a failed publish, at once: the event is stored, and the sweep sends it
#: when this fails.
SEND_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0}
#: Threads intake runs in at once. Fewer than the store's pool of connections (5, and 5 more
#: opened and closed on demand): more would only queue for a connection, or open and close one
#: per request, which costs more than the rest of the request; and fewer threads contend less
#: for the interpreter. Each holds a connection for one short transaction, so 4 take hundreds
#: of events a second.
INTAKE_THREADS = 4
TOO_LARGE = "The body is over {limit} bytes; nothing was stored."


class WebhookEndpoint:
    """The intake endpoint over one store and broker."""

    def __init__(
        self, settings: Settings, sessions: SessionFactory, celery: Callable[[], Celery]
    ) -> None:
        """Bind the endpoint to the fleet.

        Args:
            settings: the body limit, the timestamp tolerance and the secret keys.
            sessions: opens one store transaction.
            celery: the gateway's client app (built on first use, then the same one).
        """
        self.max_bytes = settings.operations.webhook_max_bytes
        self._threads: anyio.CapacityLimiter | None = None
        self.celery = celery
        self.intake = Intake(
            sessions,
            SecretBox(settings.secret_keys),
            self._send,
            tolerance=settings.operations.webhook_tolerance,
        )

    def _limiter(self) -> anyio.CapacityLimiter:
        """The threads intake may use at once (made on the event loop, on first use)."""
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(INTAKE_THREADS)
        return self._threads

    def _send(self, event_id: str) -> None:
        enqueue(self.celery(), event_id, retry_policy=SEND_RETRY_POLICY)

    async def receive(self, request: Request) -> Response:
        provider = str(request.path_params["provider"])
        connection_id = str(request.path_params["connection_id"])
        body = await self._body(request, provider)
        if isinstance(body, Response):
            return body
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        reply = await anyio.to_thread.run_sync(
            self.intake.receive,
            provider,
            connection_id,
            headers,
            request.query_params,
            body,
            limiter=self._limiter(),
        )
        return _response(reply)

    async def _body(self, request: Request, provider: str) -> bytes | Response:
        """The body, or the refusal when it is too large (or the sender went away)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return self._too_large(provider)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_bytes:
                    return self._too_large(provider)
                chunks.append(chunk)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read an answer; nothing stored
        return b"".join(chunks)

    def _too_large(self, provider: str) -> Response:
        shown = provider_label(provider)
        metrics.count("webhooks", provider=shown, outcome="refused", reason="too_large")
        logger.warning("webhook refused (413, too_large): provider=%s", shown)
        return _response(Reply.detail(413, TOO_LARGE.format(limit=self.max_bytes)))


def _response(reply: Reply) -> Response:
    return Response(
        reply.body,
        status_code=reply.status,
        headers={"Cache-Control": "no-store"},
        media_type=reply.content_type,
    )
