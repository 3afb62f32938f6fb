"""Outgoing webhooks, signed per the Standard Webhooks spec and retried with backoff.

One background thread delivers events in order of due time. A failed attempt (non-2xx answer or
network error) is rescheduled after 0.5, 1, 2 then 4 seconds, keeping its ``webhook-id`` so the
receiver can deduplicate; after 5 attempts the event is given up and counted in
``webhooks_failed``. Request threads only enqueue, so a slow receiver never slows the API.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from spark_integrations.sandbox.common import dumps
from spark_integrations.sandbox.options import decode_webhook_secret
from spark_integrations.sandbox.state import Stats

__all__ = ["BACKOFF", "WebhookSender", "sign"]

BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
TIMEOUT = 5.0


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(order=True, slots=True)
class _Delivery:
    due: float
    seq: int
    webhook_id: str = field(compare=False)
    body: bytes = field(compare=False)
    attempts: int = field(default=0, compare=False)


class WebhookSender(threading.Thread):
    """Delivers queued events to one URL until :meth:`stop`; pending events are then dropped."""

    def __init__(self, url: str, secret: str, stats: Stats) -> None:
        """Not started yet; ``secret`` is ``whsec_<base64 key>``."""
        super().__init__(name="sandbox-webhooks", daemon=True)
        self.url = url
        self._key = decode_webhook_secret(secret)
        self._stats = stats
        self._cond = threading.Condition()
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._stopped = False
        # Never through a proxy from the environment: the receiver is usually on loopback.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def enqueue(self, event_type: str, data: dict[str, Any], timestamp: str) -> None:
        """Queue one event ``{"type", "timestamp", "data"}`` for delivery now."""
        body = dumps({"type": event_type, "timestamp": timestamp, "data": data})
        delivery = _Delivery(
            time.monotonic(), next(self._seq), "msg_" + secrets.token_hex(12), body
        )
        with self._cond:
            heapq.heappush(self._heap, delivery)
            self._cond.notify()

    def run(self) -> None:
        """Wait for the earliest due delivery, attempt it, reschedule it on failure."""
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._heap or self._heap[0].due > time.monotonic()
                ):
                    wait = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                delivery = heapq.heappop(self._heap)
            ok = self._attempt(delivery)
            delivery.attempts += 1
            self._stats.incr("webhook_attempts")
            if ok:
                self._stats.incr("webhooks_sent")
            elif delivery.attempts > len(BACKOFF):
                self._stats.incr("webhooks_failed")
            else:
                delivery.due = time.monotonic() + BACKOFF[delivery.attempts - 1]
                with self._cond:
                    heapq.heappush(self._heap, delivery)

    def _attempt(self, delivery: _Delivery) -> bool:
        timestamp = int(time.time())
        request = urllib.request.Request(
            self.url,
            data=delivery.body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "sandbox-webhooks/1.0",
                "webhook-id": delivery.webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, delivery.webhook_id, timestamp, delivery.body),
            },
        )
        try:
            with self._opener.open(request, timeout=TIMEOUT) as answer:
                answer.read()
                status: int = answer.status
                return 200 <= status < 300
        except urllib.error.HTTPError as exc:
            exc.close()
            return False
        except (OSError, ValueError):
            return False

    def pending(self) -> int:
        """Deliveries waiting (first attempts and retries)."""
        with self._cond:
            return len(self._heap)

    def stop(self) -> None:
        """Stop delivering and wait for the thread (at most one attempt's timeout)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout=TIMEOUT + 1)
