"""The kombu and redis-py internals reliable fetch (broker/) relies on, with the shapes it expects.

Reliable fetch subclasses kombu's Redis transport (its poller, channel and QoS) and calls some of
their private parts. The versions it was tested with are pinned in pyproject.toml; an upgrade
that moves or reshapes any of these fails here first, naming what moved, before the transport
fails in a worker. Each failure message says what the reliable transport does with the part.
"""

from __future__ import annotations

import inspect
import tomllib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis
from kombu.asynchronous import Hub
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils.scheduling import cycle_by_name
from packaging.requirements import Requirement

from spark_integrations.broker import TRANSPORT, poller, register, reliable

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {r.name: r for r in requirements}


def test_kombu_is_the_pinned_version() -> None:
    pin = _pins()["kombu"]
    assert str(pin.specifier).startswith("=="), (
        f"kombu must stay pinned exactly (pyproject.toml has {pin}): the reliable transport "
        "uses its private internals"
    )
    assert kombu.__version__ == "5.7.0", (
        f"kombu {kombu.__version__} is installed; the reliable transport was tested with 5.7.0"
    )
    assert pin.specifier.contains(kombu.__version__)


def test_redis_py_is_the_pinned_version() -> None:
    pin = _pins()["redis"]
    assert redis.__version__.startswith("8.2."), (
        f"redis-py {redis.__version__} is installed; the reliable transport was tested with 8.2"
    )
    assert pin.specifier.contains(redis.__version__), f"redis-py {redis.__version__} vs {pin}"


# (owner, attribute, parameters expected, what the reliable transport does with it)
METHODS: list[tuple[Any, str, list[str], str]] = [
    (
        kombu_redis.MultiChannelPoller,
        "_register_BRPOP",
        ["self", "channel"],
        "Poller overrides it to take instead of sending BRPOP",
    ),
    (
        kombu_redis.MultiChannelPoller,
        "_client_registered",
        ["self", "channel", "client", "cmd"],
        "Poller calls it for the wake pub/sub socket",
    ),
    (
        kombu_redis.MultiChannelPoller,
        "_register",
        ["self", "channel", "client", "type"],
        "Poller registers the wake socket with it",
    ),
    (
        kombu_redis.MultiChannelPoller,
        "on_readable",
        ["self", "fileno"],
        "Poller overrides it to read the wake socket",
    ),
    (
        kombu_redis.MultiChannelPoller,
        "get",
        ["self", "callback", "timeout"],
        "Poller overrides it to take first in drain_events",
    ),
    (
        kombu_redis.MultiChannelPoller,
        "on_poll_start",
        ["self"],
        "the event loop calls it each tick; it calls _register_BRPOP",
    ),
    (
        kombu_redis.Channel,
        "_q_for_pri",
        ["self", "queue", "pri"],
        "Channel names the lists it takes from with it",
    ),
    (
        kombu_redis.Channel,
        "_create_client",
        ["self", "asynchronous"],
        "Channel makes the wake pub/sub client with it",
    ),
    (
        kombu_redis.Channel,
        "basic_consume",
        ["self", "queue", "args", "kwargs"],
        "Channel overrides it (no_ack queues, keep-alive)",
    ),
    (kombu_redis.Channel, "close", ["self"], "Channel overrides it to give back what it holds"),
    (
        virtual.Channel,
        "basic_consume",
        ["self", "queue", "no_ack", "callback", "consumer_tag", "kwargs"],
        "Channel.basic_consume receives no_ack second, by position",
    ),
    (
        virtual.QoS,
        "append",
        ["self", "message", "delivery_tag"],
        "QoS.append calls it (and not kombu's Redis QoS.append)",
    ),
    (virtual.QoS, "ack", ["self", "delivery_tag"], "QoS.ack and QoS.reject call it"),
    (
        virtual.QoS,
        "restore_unacked_once",
        ["self", "stderr"],
        "Channel.close calls it; it calls QoS.restore_unacked()",
    ),
    (virtual.QoS, "can_consume", ["self"], "a take happens only while it is true"),
    (
        kombu_redis.QoS,
        "restore_unacked",
        ["self", "client"],
        "QoS overrides it to give back from the held hash",
    ),
    (
        kombu_redis.QoS,
        "reject",
        ["self", "delivery_tag", "requeue"],
        "QoS overrides it (requeue gives back last in line)",
    ),
    (
        kombu_redis.Transport,
        "register_with_event_loop",
        ["self", "connection", "loop"],
        "Transport overrides it to add the heartbeat, reclaim and poke timers",
    ),
    (
        virtual.Transport,
        "_deliver",
        ["self", "message", "queue"],
        "Channel.take delivers with connection._deliver",
    ),
    (Hub, "call_repeatedly", ["self", "delay", "callback", "args"], "the timers are set with it"),
    (redis.Redis, "register_script", ["self", "script"], "the take and reclaim scripts"),
    (redis.Redis, "transaction", ["self", "func", "watches", "kwargs"], "give_back's transaction"),
    (
        redis.client.PubSub,
        "parse_response",
        ["self", "block", "timeout"],
        "the wake socket is read without blocking",
    ),
]


@pytest.mark.parametrize(
    ("owner", "name", "params", "use"),
    METHODS,
    ids=[f"{owner.__name__}.{name}" for owner, name, _, _ in METHODS],
)
def test_method_is_there_with_its_parameters(
    owner: Any, name: str, params: list[str], use: str
) -> None:
    where = f"{owner.__module__}.{owner.__qualname__}.{name}"
    method = getattr(owner, name, None)
    assert callable(method), f"{where} is gone; broker/: {use}"
    found = list(inspect.signature(method).parameters)
    assert found == params, f"{where} now takes {found}, not {params}; broker/: {use}"


def test_poller_instance_keeps_its_maps() -> None:
    poller = kombu_redis.MultiChannelPoller()
    for name, kind in (("_channels", set), ("_fd_to_chan", dict), ("_chan_to_sock", dict)):
        assert isinstance(getattr(poller, name, None), kind), (
            f"MultiChannelPoller().{name} is no longer a {kind.__name__}: Poller reads it"
        )
    poller.close()


class _StubQoS:
    def can_consume(self) -> bool:
        return True


class _StubChannel:
    active_queues = ["q"]
    active_fanout_queues: set[str] = set()
    qos = _StubQoS()


def test_poll_start_registers_brpop_for_each_consuming_channel() -> None:
    # The event loop's tick reaches the reliable take only through this call.
    called = []

    class Probe(kombu_redis.MultiChannelPoller):
        def _register_BRPOP(self, channel: Any) -> None:
            called.append(channel)

    poller = Probe()
    channel = _StubChannel()
    poller.add(channel)
    poller.on_poll_start()
    assert called == [channel], "on_poll_start no longer calls _register_BRPOP(channel)"
    poller.close()


def test_channel_class_attributes() -> None:
    channel = kombu_redis.Channel
    assert channel.sep == "\x06\x16", f"kombu's priority separator is now {channel.sep!r}"
    assert list(channel.priority_steps) == [0, 3, 6, 9], "kombu's priority steps changed"
    options = channel.from_transport_options
    assert isinstance(options, tuple), "Channel.from_transport_options is no longer a tuple"
    for name in ("global_keyprefix", "priority_steps", "sep", "queue_order_strategy"):
        assert name in options, f"transport option {name!r} is no longer read by kombu's Channel"
    assert channel.global_keyprefix == "", "kombu's global_keyprefix default changed"
    assert reliable.Channel.QoS is reliable.QoS
    assert "reclaim_after" in reliable.Channel.from_transport_options
    assert kombu_redis.Transport.Channel is kombu_redis.Channel


def test_queue_cycle_consume_and_rotate() -> None:
    cycle = cycle_by_name(kombu_redis.Channel.queue_order_strategy)()
    cycle.update(["a", "b", "c"])
    assert cycle.consume(3) == ["a", "b", "c"]
    cycle.rotate("a")
    assert cycle.consume(3) == ["b", "c", "a"], "the round-robin queue cycle changed"


def test_channel_instance_parts(redis_url: str) -> None:
    with kombu.Connection(redis_url) as conn:
        channel = conn.channel()
        assert set(channel.handlers) >= {"BRPOP", "LISTEN"}, "Channel.handlers changed shape"
        assert hasattr(channel._queue_cycle, "rotate"), "Channel._queue_cycle changed"
        assert hasattr(channel._queue_cycle, "consume"), "Channel._queue_cycle changed"
        assert channel._q_for_pri("q", 0) == "q"
        assert channel._q_for_pri("q", 9) == "q\x06\x169"
        assert issubclass(channel.ResponseError, redis.ResponseError)
        assert redis.ConnectionError in channel.connection_errors
        assert channel.client.connection_pool.connection_kwargs["db"] == int(
            redis_url.rsplit("/", 1)[1]
        ), "the channel's database is no longer in its pool's connection_kwargs"
        assert isinstance(conn.transport.cycle, kombu_redis.MultiChannelPoller)
        assert channel in conn.transport.cycle._channels
        qos = channel.qos
        assert isinstance(qos._delivered, OrderedDict), "QoS._delivered changed shape"
        assert hasattr(qos._delivered, "restored")
        assert channel.do_restore is True


def test_transport_aliases_resolve_to_the_reliable_transport() -> None:
    assert isinstance(TRANSPORT_ALIASES, dict), "kombu.transport.TRANSPORT_ALIASES changed"
    assert TRANSPORT_ALIASES["redis"] == "kombu.transport.redis:Transport"
    register()
    assert TRANSPORT == "sparkredis"
    from kombu.transport import resolve_transport

    for alias in ("sparkredis", "sparkrediss"):
        assert resolve_transport(alias) is poller.Transport, alias
    assert kombu.Connection("sparkredis://127.0.0.1:6379/1").transport_cls == "sparkredis"
    assert kombu.Connection("sparkredis+socket:///x.sock").transport_cls == "sparkredis"


@pytest.mark.server
@pytest.mark.parametrize("query", ["", "?ssl_cert_reqs=required"], ids=["default", "required"])
def test_sparkrediss_speaks_tls_as_rediss_does(redis_url: str, query: str) -> None:
    # kombu turns TLS on by the scheme's name (rediss); the reliable one must not fall back to
    # the clear (its password would travel unencrypted). This Redis speaks no TLS: both fail.
    register()
    plain = redis_url.removeprefix("redis://")
    options = {"socket_connect_timeout": 1, "socket_timeout": 1, "max_retries": 0}
    for scheme in ("rediss", "sparkrediss"):
        with kombu.Connection(f"{scheme}://{plain}{query}", transport_options=options) as conn:
            assert conn.transport is not None
            assert conn.ssl, f"{scheme}:// does not ask for TLS"
            with pytest.raises(Exception) as info:  # redis-py's or ssl's error
                conn.default_channel.client.ping()
            assert not isinstance(info.value, AssertionError)
    with kombu.Connection(f"sparkredis://{plain}") as conn:
        assert conn.default_channel.client.ping()
