"""celeryconfig: the settings that keep work from being lost, in each mode.

celeryconfig reads the environment when it is imported, so each case imports it in a fresh
interpreter with exactly the environment under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from spark_integrations.constants import (
    ALL_QUEUES,
    DEFAULT_RECLAIM_AFTER,
    QUEUE_CALLS,
    QUEUE_MAINTENANCE,
    QUEUE_SYNCS,
    QUEUE_WEBHOOKS,
    TASK_CALL,
    TASK_PROCESS_WEBHOOK,
    TASK_REFRESH_TOKENS,
    TASK_SYNC,
)

P = "SPARK_INTEGRATIONS_"

_DUMP = textwrap.dedent(
    """
    import __future__
    import json
    import types

    from celery import Celery
    from celery.app.defaults import NAMESPACES, flatten

    import spark_integrations.celeryconfig as c
    names = [
        n for n in dir(c)
        if not n.startswith("_")
        and n.islower()
        and not isinstance(getattr(c, n), (types.ModuleType, __future__._Feature))
    ]
    known = {k for k, _ in flatten(NAMESPACES)}
    # Read back through a Celery app, so a misspelt setting (which Celery ignores) shows.
    app = Celery(set_as_current=False)
    app.config_from_object(c)
    out = {"unknown_settings": sorted(set(names) - known)}
    for n in names:
        v = app.conf[n]
        if isinstance(v, (str, int, float, bool, list, tuple, dict, type(None))):
            out[n] = v
    out["task_queues"] = [
        {
            "name": q.name,
            "exchange": q.exchange.name,
            "exchange_type": q.exchange.type,
            "routing_key": q.routing_key,
            "queue_arguments": q.queue_arguments,
            "durable": q.durable,
            "auto_delete": q.auto_delete,
            "exclusive": q.exclusive,
        }
        for q in c.task_queues
    ]
    print(json.dumps(out, default=repr))
    """
)


def load_config(env: dict[str, str]) -> dict[str, Any]:
    """celeryconfig's values, imported in a fresh interpreter under ``env``."""
    proc = subprocess.run(
        [sys.executable, "-c", _DUMP],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture
def embedded_config(clean_env: Path) -> dict[str, Any]:
    return load_config(dict(os.environ))


def check_common(c: dict[str, Any]) -> None:
    assert c["unknown_settings"] == []
    assert c["task_acks_late"] is True
    assert c["task_reject_on_worker_lost"] is True
    assert c["worker_prefetch_multiplier"] == 1
    assert c["accept_content"] == ["json"]
    assert c["result_accept_content"] == ["json"]
    assert c["task_serializer"] == "json"
    assert c["result_serializer"] == "json"
    assert c["broker_connection_retry_on_startup"] is True
    assert c["worker_cancel_long_running_tasks_on_connection_loss"] is True
    assert c["task_soft_time_limit"] < c["task_time_limit"]
    assert c["result_backend_transport_options"]["visibility_timeout"] > c["task_time_limit"]


def test_embedded_config(embedded_config: dict[str, Any], clean_env: Path) -> None:
    c = embedded_config
    check_common(c)
    # The fleet's own app consumes through reliable fetch; results stay on the plain URL.
    assert c["broker_url"].startswith("sparkredis+socket://")
    assert c["result_backend"].startswith("redis+socket://")
    assert c["broker_url"] == "spark" + c["result_backend"]
    assert c["broker_transport_options"]["reclaim_after"] == DEFAULT_RECLAIM_AFTER == 60
    visibility = c["broker_transport_options"]["visibility_timeout"]
    assert c["task_time_limit"] < visibility
    assert c["result_backend_transport_options"]["visibility_timeout"] == visibility
    # The unacked scan runs well within the visibility timeout.
    assert 0 < c["broker_transport_options"]["unacked_restore_interval"] < visibility
    assert c["beat_schedule_filename"].startswith(str(clean_env))


def test_queues_are_the_contract_queues_and_plain(embedded_config: dict[str, Any]) -> None:
    queues = {q["name"]: q for q in embedded_config["task_queues"]}
    assert set(queues) == set(ALL_QUEUES)
    assert len(embedded_config["task_queues"]) == 5
    for name, q in queues.items():
        assert q["queue_arguments"] in (None, {})
        assert q["exchange"] == name
        assert q["exchange_type"] == "direct"
        assert q["routing_key"] == name
        assert q["durable"] is True
        assert q["auto_delete"] is False
        assert q["exclusive"] is False


def test_task_routes_follow_contract(embedded_config: dict[str, Any]) -> None:
    routes = embedded_config["task_routes"]
    assert routes[TASK_CALL] == {"queue": QUEUE_CALLS} == {"queue": "integrations.calls"}
    assert routes[TASK_SYNC] == {"queue": QUEUE_SYNCS} == {"queue": "integrations.syncs"}
    assert routes[TASK_PROCESS_WEBHOOK] == {"queue": "integrations.webhooks"}
    assert routes[TASK_PROCESS_WEBHOOK] == {"queue": QUEUE_WEBHOOKS}
    assert routes[TASK_REFRESH_TOKENS] == {"queue": "integrations.maintenance"}
    assert routes[TASK_REFRESH_TOKENS] == {"queue": QUEUE_MAINTENANCE}
    assert embedded_config["task_default_queue"] in ALL_QUEUES


def test_custom_timeouts_flow_through(clean_env: Path) -> None:
    env = dict(os.environ)
    env[P + "VISIBILITY_TIMEOUT"] = "120"
    env[P + "TASK_TIME_LIMIT"] = "100"
    c = load_config(env)
    assert c["task_time_limit"] == 100
    assert c["broker_transport_options"]["visibility_timeout"] == 120
    assert c["result_backend_transport_options"]["visibility_timeout"] == 120
    assert c["broker_transport_options"]["unacked_restore_interval"] <= 12


def test_server_redis_config(clean_env: Path, fernet_key: str) -> None:
    env = dict(os.environ)
    env[P + "BROKER_URL"] = "redis://127.0.0.1:6379/3"
    env[P + "DATABASE_URL"] = "postgresql://postgres@127.0.0.1/none"
    env[P + "SECRET_KEYS"] = fernet_key
    c = load_config(env)
    check_common(c)
    assert c["broker_url"] == "sparkredis://127.0.0.1:6379/3"
    assert c["result_backend"] == "redis://127.0.0.1:6379/3"
    assert c["broker_transport_options"]["reclaim_after"] == DEFAULT_RECLAIM_AFTER
    assert c["task_time_limit"] < c["broker_transport_options"]["visibility_timeout"]
    # Nothing of the configuration leaks the keys.
    assert fernet_key not in json.dumps(c)


def test_server_amqp_config(clean_env: Path, fernet_key: str) -> None:
    env = dict(os.environ)
    env[P + "BROKER_URL"] = "amqp://guest:guest@127.0.0.1:5672//"
    env[P + "RESULT_BACKEND"] = "redis://127.0.0.1:6379/3"
    env[P + "REDIS_URL"] = "redis://127.0.0.1:6379/4"
    env[P + "DATABASE_URL"] = "postgresql://postgres@127.0.0.1/none"
    env[P + "SECRET_KEYS"] = fernet_key
    c = load_config(env)
    check_common(c)
    assert c["broker_transport_options"].get("confirm_publish") is True
    assert "reclaim_after" not in c["broker_transport_options"]
    assert c["broker_url"] == "amqp://guest:guest@127.0.0.1:5672//"
    assert c["result_backend"] == "redis://127.0.0.1:6379/3"
    queues = c["task_queues"]
    assert {q["name"] for q in queues} == set(ALL_QUEUES)
    assert all(q["queue_arguments"] in (None, {}) for q in queues)


def _server_env(broker_url: str, fernet_key: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env[P + "BROKER_URL"] = broker_url
    env[P + "DATABASE_URL"] = "postgresql://postgres@127.0.0.1/none"
    env[P + "SECRET_KEYS"] = fernet_key
    if broker_url.startswith("amqp"):
        env[P + "RESULT_BACKEND"] = "redis://127.0.0.1:6379/3"
        env[P + "REDIS_URL"] = "redis://127.0.0.1:6379/4"
    env.update({P + name: value for name, value in extra.items()})
    return env


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("redis://127.0.0.1:6379/3", "sparkredis://127.0.0.1:6379/3"),
        ("redis://:pw@redis.example:6380/0", "sparkredis://:pw@redis.example:6380/0"),
        (
            "rediss://:pw@redis.example:6380/0?ssl_cert_reqs=required",
            "sparkrediss://:pw@redis.example:6380/0?ssl_cert_reqs=required",
        ),
        ("redis+socket:///run/redis/redis.sock", "sparkredis+socket:///run/redis/redis.sock"),
        ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:guest@127.0.0.1:5672//"),
        ("amqps://guest:guest@rabbit.example:5671//", "amqps://guest:guest@rabbit.example:5671//"),
    ],
    ids=["redis", "redis-password", "rediss", "redis-socket", "amqp", "amqps"],
)
def test_broker_url_names_the_reliable_transport_on_redis(
    clean_env: Path, fernet_key: str, given: str, expected: str
) -> None:
    c = load_config(_server_env(given, fernet_key))
    assert c["broker_url"] == expected


@pytest.mark.parametrize(
    "given",
    ["redis://127.0.0.1:6379/3", "rediss://:pw@redis.example:6380/0?ssl_cert_reqs=required"],
)
def test_kombu_fetch_keeps_the_broker_url(clean_env: Path, fernet_key: str, given: str) -> None:
    c = load_config(_server_env(given, fernet_key, BROKER_FETCH="kombu"))
    assert c["broker_url"] == given
    assert c["broker_transport_options"]["visibility_timeout"] > c["task_time_limit"]


def test_kombu_fetch_in_embedded_mode(clean_env: Path) -> None:
    env = dict(os.environ)
    env[P + "BROKER_FETCH"] = "kombu"
    c = load_config(env)
    assert c["broker_url"].startswith("redis+socket://")
    assert c["broker_url"] == c["result_backend"]


def test_reclaim_after_flows_into_the_transport_options(clean_env: Path, fernet_key: str) -> None:
    env = _server_env("redis://127.0.0.1:6379/3", fernet_key, RECLAIM_AFTER="7")
    assert load_config(env)["broker_transport_options"]["reclaim_after"] == 7
    env = dict(os.environ)
    env[P + "RECLAIM_AFTER"] = "3"
    assert load_config(env)["broker_transport_options"]["reclaim_after"] == 3


def test_the_reliable_url_opens_the_reliable_transport(clean_env: Path, fernet_key: str) -> None:
    # In a fresh interpreter, as a worker starts: importing celeryconfig is enough for kombu to
    # resolve the scheme it names.
    env = _server_env("redis://127.0.0.1:6379/3", fernet_key)
    code = (
        "import kombu, spark_integrations.celeryconfig as c\n"
        "print(type(kombu.Connection(c.broker_url).transport).__module__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "spark_integrations.broker.poller"


def _import_refused(module: str, **variables: str) -> str:
    """Import ``module`` in a fresh interpreter with ``variables`` set; its stderr, after
    checking the import failed."""
    env = dict(os.environ)
    env.update({P + name: value for name, value in variables.items()})
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    return proc.stderr


@pytest.mark.parametrize(("name", "value"), [("BROKER_FETCH", "brpop"), ("RECLAIM_AFTER", "0")])
def test_bad_fetch_settings_refused_at_import(clean_env: Path, name: str, value: str) -> None:
    assert P + name in _import_refused("spark_integrations.celeryconfig", **{name: value})


def test_bad_environment_refused_at_import(clean_env: Path) -> None:
    stderr = _import_refused("celeryconfig", BROKER_URL="redis://127.0.0.1:6379/3")
    assert P + "SECRET_KEYS" in stderr
