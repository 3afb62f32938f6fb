"""Reliable fetch: kombu's Redis transport with no instant a message is in a worker's memory only.

kombu's Redis channel takes a message with ``BRPOP`` and only then records it in its ``unacked``
hash: a worker main process killed between the two loses the message (kombu #305, celery #4354
and #7950). This channel takes with one Lua script instead, which pops the message and writes
it to the consumer's own held hash in the same atomic step (:data:`scripts.TAKE`). An
acknowledgement deletes it there. Every consumer keeps an ``alive`` key that expires after
``reclaim_after`` seconds unless renewed (every quarter of that, by a thread), and the living
hand the held messages of consumers whose key expired back to their lists
(:data:`scripts.RECLAIM`), first in line, marked redelivered. So:

* a message is in a list, or in exactly one consumer's held hash, at every instant;
* a message held by a living worker is never handed to another while it stays connected (no
  visibility timeout applies: a long task or a retry waiting for its countdown stays with its
  worker; a worker that loses its connection hands back what it holds, as kombu's fetch does);
* a dead worker's messages come back about ``reclaim_after`` seconds after it died (a worker
  counts as dead when its process is, or when it cannot reach Redis for that long);
* a poison message still comes back each time, and ``tasks.base.FleetTask`` dead-letters it
  after ``SPARK_INTEGRATIONS_MAX_DELIVERIES`` deliveries, as before.

A take does not block: the worker is woken by Redis keyspace notifications of its lists
(``notify-keyspace-events`` with ``K`` and ``l``, which the worker turns on when it may) and
takes until it has no free slot or the lists are empty. Without notifications (a server whose
``CONFIG`` is refused and not configured) it takes every :data:`POLL_WITHOUT_WAKE` seconds;
with them, every :data:`POLL_WITH_WAKE` seconds as a safety net.

:mod:`broker.poller` holds the event-loop side (the poller and the transport with its timers).
Both rely on kombu's Redis transport internals (the poller's registration, the queue cycle,
``_q_for_pri``, the virtual QoS): the versions they are tested with are pinned in
pyproject.toml, and ``tests/unit/test_broker_kombu_surface.py`` checks the surface they use.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from spark_integrations.broker.scripts import RECLAIM, TAKE
from spark_integrations.constants import DEFAULT_RECLAIM_AFTER, REDIS_FETCH_PREFIX

__all__ = ["GROWING", "POLL_WITHOUT_WAKE", "POLL_WITH_WAKE", "WAKE_FLAGS", "Channel", "QoS"]

log = logging.getLogger(__name__)

#: Seconds between takes that nothing woke, when keyspace notifications wake the worker.
POLL_WITH_WAKE = 1.0
#: Seconds between takes when the broker sends no keyspace notifications.
POLL_WITHOUT_WAKE = 0.1
#: The keyspace events a worker needs: K (keyspace channels) and l (list commands).
WAKE_FLAGS = "Kl"
#: The list events that may bring a message (a take's own rpop wakes no one).
GROWING = frozenset({"lpush", "rpush", "linsert"})


class QoS(kombu_redis.QoS):
    """Acknowledgements against the consumer's held hash instead of kombu's ``unacked`` hash.

    ``restore_visible`` is kept as kombu has it: it hands out what consumers on kombu's own
    fetch (an older worker, ``SPARK_INTEGRATIONS_BROKER_FETCH=kombu``) left unacknowledged.
    """

    channel: Channel

    def append(self, message: Any, delivery_tag: str) -> None:
        # The take already wrote the message to the held hash.
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        self.channel.release(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.channel.give_back(delivery_tag, leftmost=True)
        else:
            self.channel.release(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        for tag in list(self._delivered):
            self.channel.give_back(tag)
        self._delivered.clear()


class Channel(kombu_redis.Channel):
    """A Redis channel whose consumers take messages with :data:`scripts.TAKE`."""

    QoS = QoS

    #: Seconds a consumer may go without renewing its alive key before its messages are reclaimed.
    reclaim_after: float = DEFAULT_RECLAIM_AFTER
    #: Prefix of the held, alive and consumers keys.
    fetch_prefix: str = REDIS_FETCH_PREFIX

    from_transport_options: tuple[str, ...] = (  # type: ignore[assignment]
        *kombu_redis.Channel.from_transport_options,
        "reclaim_after",
        "fetch_prefix",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.global_keyprefix:
            raise ValueError("reliable fetch does not support kombu's global_keyprefix")
        self.consumer_id = uuid.uuid4().hex
        self.held_key = f"{self.fetch_prefix}held:{self.consumer_id}"
        self.unreadable_key = f"{self.fetch_prefix}unreadable"
        self.alive_key = f"{self.fetch_prefix}alive:{self.consumer_id}"
        self.consumers_key = f"{self.fetch_prefix}consumers"
        self.wants_take = True
        self.wake_on = False
        self.poked_at = 0.0
        self._alive_stop = threading.Event()
        self._alive_thread: threading.Thread | None = None
        self._no_ack_queues: set[str] = set()
        self._wake_keys: frozenset[str] = frozenset()
        self._wake_checked = False
        self._take_script = self.client.register_script(TAKE)
        self._reclaim_script = self.client.register_script(RECLAIM)
        self.handlers["WAKE"] = self._wake_read

    # -- consuming ----------------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
            self.keep_alive()
        self.wants_take = True
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def consumed_keys(self, queues: list[str]) -> tuple[list[str], int]:
        """The lists to take from, in kombu's order, those consumed with acks first."""
        acked = [q for q in queues if q not in self._no_ack_queues]
        plain = [q for q in queues if q in self._no_ack_queues]
        keys = [self._q_for_pri(q, pri) for pri in self.priority_steps for q in acked]
        count = len(keys)
        keys += [self._q_for_pri(q, pri) for pri in self.priority_steps for q in plain]
        return keys, count

    def take(self) -> bool:
        """Take one message and deliver it: True if one was found. Leaves ``wants_take`` false
        when the lists hold nothing more."""
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return False
        keys, acked = self.consumed_keys(queues)
        found = self._take_script(
            keys=[self.held_key, self.alive_key, self.consumers_key, *keys],
            args=[self.consumer_id, int(self.reclaim_after * 1000), acked],
            client=self.client,
        )
        if not found:
            self.wants_take = False
            return False
        source, item, raw_tag, more = found
        self.wants_take = bool(more)
        queue = bytes_to_str(source).rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(queue)
        tag = bytes_to_str(raw_tag) if raw_tag else None
        try:
            self.connection._deliver(loads(bytes_to_str(item)), queue)
        except self.connection_errors:
            raise
        except Exception:
            # Unreadable for kombu (not JSON, a body it cannot decode, ...): it would fail every
            # worker that took it, first in line each time. Set aside once, with a log line.
            if tag is not None and tag in self.qos._delivered:
                raise  # delivered: what failed is the consumer's, as with kombu's own fetch
            log.critical(
                "Cannot read a message taken from %s; set aside in %s: %r",
                queue,
                self.unreadable_key,
                item[:200],
                exc_info=True,
            )
            if tag is None:  # never held (no tag, or a queue consumed without acks)
                self.client.rpush(self.unreadable_key, item)
            else:
                self.set_aside(tag)
        return True

    def take_while_possible(self) -> int:
        """Take while a slot is free and the lists may hold something; how many were taken."""
        taken = 0
        while self.wants_take and self.active_queues and self.qos.can_consume():
            if self.take():
                taken += 1
        return taken

    # -- acknowledgements and giving back -------------------------------------------------------

    def release(self, tag: str) -> None:
        """The message is done with: forget it."""
        self.client.hdel(self.held_key, tag)

    def set_aside(self, tag: str) -> None:
        """Move a held message no one can read to the unreadable list, for a person to see."""

        def transaction(pipe: Any) -> None:
            raw = pipe.hget(self.held_key, tag)
            pipe.multi()
            pipe.hdel(self.held_key, tag)
            if raw:
                pipe.rpush(self.unreadable_key, raw)

        self.client.transaction(transaction, self.held_key)

    def give_back(self, tag: str, leftmost: bool = False) -> None:
        """Put a held message back on its list, marked redelivered (first in line unless
        ``leftmost``, which puts it last, as kombu's reject with requeue does)."""

        def transaction(pipe: Any) -> None:
            raw = pipe.hget(self.held_key, tag)
            pipe.multi()
            pipe.hdel(self.held_key, tag)
            if raw:
                try:
                    source, payload = loads(bytes_to_str(raw))
                    payload.get("properties", {})
                except Exception:  # no list to put it back on: set it aside instead
                    log.critical("Cannot read a held message; set aside in %s", self.unreadable_key)
                    pipe.rpush(self.unreadable_key, raw)
                    return
                # As kombu marks what it restores.
                headers = payload.get("headers")
                if isinstance(headers, dict):
                    headers["redelivered"] = True
                info = payload.get("properties", {}).get("delivery_info")
                if isinstance(info, dict):
                    info["redelivered"] = True
                (pipe.lpush if leftmost else pipe.rpush)(source, dumps(payload))

        self.client.transaction(transaction, self.held_key)

    def renew(self) -> None:
        """Prove alive: the alive key lives ``reclaim_after`` seconds more."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.set(self.alive_key, "1", px=int(self.reclaim_after * 1000))
            pipe.sadd(self.consumers_key, self.consumer_id)
            pipe.execute()

    def keep_alive(self) -> None:
        """Renew from a thread of its own every quarter of the reclaim time, until closed.

        A thread rather than the event loop: a worker's event loop stops during a warm shutdown
        while its pool finishes the tasks it runs (up to the task time limit), and those
        tasks' messages must not be handed out meanwhile. So a worker counts as dead when its
        process is (or when it cannot reach Redis for the whole reclaim time).
        """
        if self._alive_thread is not None:
            return
        interval = max(0.25, self.reclaim_after / 4)
        stop = self._alive_stop

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.renew()
                except Exception:  # the next beat tries again; the loop must not die
                    log.debug("alive key not renewed; will retry", exc_info=True)

        self.renew()
        self._alive_thread = threading.Thread(
            target=beat, name=f"reliable-fetch-{self.consumer_id[:8]}", daemon=True
        )
        self._alive_thread.start()

    def heartbeat(self) -> None:
        """Prove alive, and give back what was taken but never delivered (an error between
        the two): it would otherwise stay held for as long as this worker lives."""
        self.renew()
        for raw in self.client.hkeys(self.held_key):
            tag = bytes_to_str(raw)
            if tag not in self.qos._delivered:
                self.give_back(tag)

    def reclaim(self) -> int:
        """Give back the messages of consumers that stopped proving alive; how many."""
        moved = self._reclaim_script(
            keys=[self.consumers_key, self.held_key],
            args=[self.consumer_id, self.fetch_prefix],
            client=self.client,
        )
        for raw in moved:
            self.give_back(bytes_to_str(raw))
        if moved:
            log.warning("Gave back %d message(s) held by workers that died.", len(moved))
        return len(moved)

    # -- waking ---------------------------------------------------------------------------------

    def wake_keys(self) -> frozenset[str]:
        """The keyspace channels of every list this channel consumes."""
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        keys, _ = self.consumed_keys(self.active_queues)
        return frozenset(f"__keyspace@{db}__:{key}" for key in keys)

    def enable_wake(self) -> bool:
        """Make sure the server sends list events (once per channel); False if it will not."""
        if self._wake_checked:
            return self.wake_on
        self._wake_checked = True
        try:
            answer = self.client.config_get("notify-keyspace-events")
            flags = "".join(bytes_to_str(v) for v in answer.values())
            has_list = "l" in flags or "A" in flags
            if "K" not in flags or not has_list:
                merged = flags + "".join(f for f in WAKE_FLAGS if f not in flags)
                self.client.config_set("notify-keyspace-events", merged)
            self.wake_on = True
        except self.ResponseError as exc:
            log.warning(
                "The broker refused to send keyspace notifications (%s): workers take every "
                "%.1f s instead of at once. Set notify-keyspace-events to include K and l.",
                exc,
                POLL_WITHOUT_WAKE,
            )
            self.wake_on = False
        return self.wake_on

    @property
    def wakeclient(self) -> Any:
        client = self.__dict__.get("_wakeclient")
        if client is None:
            client = self.__dict__["_wakeclient"] = self._create_client(asynchronous=True).pubsub()
        return client

    def wake_subscribe(self) -> None:
        """Listen to the lists' keyspace channels (and stop listening to lists let go)."""
        wanted = self.wake_keys()
        client = self.wakeclient
        if client.connection is None or client.connection._sock is None:
            self._wake_keys = frozenset()
        gone = self._wake_keys - wanted
        new = wanted - self._wake_keys
        if new:
            client.subscribe(*sorted(new))
        if gone:
            client.unsubscribe(*sorted(gone))
        self._wake_keys = wanted

    def _wake_read(self) -> None:
        """Read every notification waiting, take if one says a list grew; ``Empty`` when
        nothing was taken (as kombu's ``BRPOP`` read does), so a poll that woke for nothing
        is not counted as a delivery."""
        client = self.wakeclient
        try:
            while client.connection is not None:
                message = client.parse_response(block=False, timeout=0)
                if (
                    message is not None
                    and bytes_to_str(message[0]) == "message"
                    and bytes_to_str(message[2]) in GROWING
                ):
                    self.wants_take = True
                # None is also redis-py's answer to its own health check: read on while
                # anything is buffered.
                if client.connection is None or not client.connection.can_read(timeout=0):
                    break
        except self.connection_errors:
            if client.connection is not None:
                client.connection.disconnect()
            self._wake_keys = frozenset()
            raise
        if not self.take_while_possible():
            raise Empty()

    def _poll_error(self, type: str, **options: Any) -> Any:
        if type == "WAKE":
            return self._wake_read()
        return super()._poll_error(type, **options)

    def close(self) -> None:
        """Hand back everything held, then leave: nothing waits for the reclaim time."""
        self._alive_stop.set()
        if self._alive_thread is not None and self._alive_thread is not threading.current_thread():
            self._alive_thread.join(timeout=5)
        if not self.closed and self.__dict__.get("client") is not None:
            try:
                self.qos.restore_unacked_once()
                for raw in self.client.hkeys(self.held_key):
                    self.give_back(bytes_to_str(raw))
                self.client.delete(self.alive_key)
                self.client.srem(self.consumers_key, self.consumer_id)
            except self.connection_errors:
                # Whatever is held is reclaimed once the alive key expires. kombu's close
                # restores again, and asserts nothing is left to restore.
                self.qos._delivered.clear()
        wake = self.__dict__.pop("_wakeclient", None)
        if wake is not None:
            with contextlib.suppress(*self.connection_errors):
                wake.close()
        super().close()
