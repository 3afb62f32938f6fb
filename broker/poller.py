"""The event-loop side of reliable fetch: kombu's poller taking instead of sending ``BRPOP``,
woken by keyspace notifications, and the transport that runs its timers (:mod:`broker.reliable`
holds the channel and what it does).
"""

from __future__ import annotations

import logging
import ssl
from time import monotonic
from typing import Any

from kombu.transport import redis as kombu_redis

from spark_integrations.broker.reliable import POLL_WITH_WAKE, POLL_WITHOUT_WAKE, Channel

__all__ = ["Poller", "Transport"]

log = logging.getLogger(__name__)


class Poller(kombu_redis.MultiChannelPoller):
    """kombu's poller, taking instead of sending ``BRPOP``, woken by keyspace notifications."""

    def _register_BRPOP(self, channel: Channel) -> None:
        # Subscribed even when the server's setting could not be read or set: a server
        # configured with the events sends them all the same (the fast poll stays on).
        channel.enable_wake()
        if not self._client_registered(channel, channel.wakeclient, "WAKE"):
            channel._wake_keys = frozenset()
            self._register(channel, channel.wakeclient, "WAKE")
        channel.wake_subscribe()
        channel.take_while_possible()

    def on_readable(self, fileno: int) -> Any:
        chan_type = self._fd_to_chan.get(fileno)
        if chan_type is not None and chan_type[1] == "WAKE":
            # Read whatever the slots: an unread notification would keep the socket readable.
            return chan_type[0].handlers["WAKE"]()
        return super().on_readable(fileno)

    def poke(self) -> None:
        """Take on channels no notification woke lately: every :data:`POLL_WITHOUT_WAKE`
        seconds without notifications, every :data:`POLL_WITH_WAKE` with them (lost ones)."""
        now = monotonic()
        for channel in self._channels:
            if not channel.active_queues:
                continue
            if channel.wake_on and now - channel.poked_at < POLL_WITH_WAKE:
                continue
            channel.poked_at = now
            channel.wants_take = True
            channel.take_while_possible()

    def heartbeat(self) -> None:
        for channel in self._channels:
            if channel.active_queues or channel.qos._delivered:
                try:
                    channel.heartbeat()
                except channel.connection_errors:
                    log.debug("heartbeat: broker unreachable, will retry", exc_info=True)

    def reclaim(self) -> None:
        for channel in self._channels:
            if channel.active_queues:
                try:
                    channel.reclaim()
                except channel.connection_errors:
                    log.debug("reclaim: broker unreachable, will retry", exc_info=True)
                return  # one channel suffices: the consumers are the server's, not the channel's

    def get(self, callback: Any, timeout: float | None = None) -> Any:
        # Without an event loop (drain_events): take one first, then wait on the wake socket
        # and the fanout listener no longer than the poll interval.
        for channel in self._channels:
            if channel.active_queues and channel.qos.can_consume() and channel.take():
                return None
        limit = POLL_WITH_WAKE if any(c.wake_on for c in self._channels) else POLL_WITHOUT_WAKE
        return super().get(callback, timeout=limit if timeout is None else min(timeout, limit))


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel` (reliable fetch)."""

    Channel = Channel

    def __init__(self, client: Any, *args: Any, **kwargs: Any) -> None:
        if client.transport_cls == "sparkrediss" and not client.ssl:
            # kombu turns TLS on for its own rediss scheme alone (kombu.connection): the same
            # here, with kombu's default when neither the URL nor broker_use_ssl says more.
            log.warning(
                "Secure redis scheme specified (sparkrediss) with no ssl options, defaulting to "
                "insecure SSL behaviour."
            )
            client.ssl = {"ssl_cert_reqs": ssl.CERT_NONE}
        super().__init__(client, *args, **kwargs)
        self.cycle = Poller()  # type: ignore[assignment]

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        cycle: Any = self.cycle
        for attr in ("_heartbeat_tref", "_reclaim_tref", "_poke_tref"):
            old = getattr(cycle, attr, None)
            if old is not None:
                old.cancel()
        reclaim_after = float(
            connection.client.transport_options.get("reclaim_after", Channel.reclaim_after)
        )
        cycle._heartbeat_tref = loop.call_repeatedly(max(0.25, reclaim_after / 4), cycle.heartbeat)
        cycle._reclaim_tref = loop.call_repeatedly(max(0.5, reclaim_after / 2), cycle.reclaim)
        cycle._poke_tref = loop.call_repeatedly(POLL_WITHOUT_WAKE, cycle.poke)
