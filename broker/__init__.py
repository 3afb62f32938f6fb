"""The fleet's broker transport: reliable fetch on Redis (:mod:`broker.reliable`).

:func:`worker_broker_url` gives the URL the fleet's Celery app uses: on a Redis broker with
``SPARK_INTEGRATIONS_BROKER_FETCH=reliable`` (the default) its scheme names the transport
registered here (``sparkredis``, ``sparkrediss``, ``sparkredis+socket``), so every process of
the fleet consumes through :class:`broker.poller.Transport`. Senders elsewhere (spark's own
``send_task``, the client distribution) keep the plain ``redis://`` URL: a message is pushed
the same way by both, and it is the taking that the transport makes safe.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

__all__ = ["TRANSPORT", "register", "worker_broker_url"]

#: The alias kombu resolves to the reliable transport.
TRANSPORT = "sparkredis"
_PATH = "spark_integrations.broker.poller:Transport"
_SCHEMES = {
    "redis://": f"{TRANSPORT}://",
    "rediss://": f"{TRANSPORT}s://",
    "redis+socket://": f"{TRANSPORT}+socket://",
}


def register() -> None:
    """Make kombu resolve the aliases to the reliable transport (idempotent)."""
    TRANSPORT_ALIASES[TRANSPORT] = _PATH
    TRANSPORT_ALIASES[f"{TRANSPORT}s"] = _PATH


def worker_broker_url(broker_url: str, fetch: str) -> str:
    """The broker URL for the fleet's own app: the reliable transport's on Redis when
    ``fetch`` is ``reliable``, else ``broker_url`` unchanged (AMQP, or kombu's fetch)."""
    if fetch != "reliable":
        return broker_url
    for plain, reliable in _SCHEMES.items():
        if broker_url.startswith(plain):
            register()
            return reliable + broker_url[len(plain) :]
    return broker_url
