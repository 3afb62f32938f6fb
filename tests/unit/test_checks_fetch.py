"""doctor's broker_fetch check: the fetch mode, the reclaim time, and whether a Redis broker sends
the keyspace notifications workers wake on (ok), does not (a warning, not a failure) or will not
say (CONFIG refused: a warning). Against a private Redis server, whose configuration the tests
may change without touching the machine's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

import spark_integrations.settings as settings_module
from spark_integrations.checks import Check, broker_fetch_check
from spark_integrations.settings import Settings
from spark_integrations.workers import doctor
from spark_integrations.workers.embedded import EmbeddedRedis
from tests.unit.conftest import dispose_engines

PASSWORD = "doctor-pw-7f3a"
KEY = Fernet.generate_key().decode()
_load = settings_module.load


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A Redis of this module's own (the embedded server, started with
    ``notify-keyspace-events Kl``); a user who may not run CONFIG."""
    home = tmp_path_factory.mktemp("r", numbered=True)
    server = EmbeddedRedis(home, home / "r.sock")
    server.ensure_running()
    try:
        with server.client() as client:
            client.acl_setuser(
                "noconfig",
                enabled=True,
                passwords=[f"+{PASSWORD}"],
                keys=["*"],
                commands=["+@all", "-config"],
            )
        yield server
    finally:
        server.stop()


@pytest.fixture
def flags(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A client of the private server; its notify-keyspace-events set back afterwards."""
    client = server.client()
    try:
        yield client
    finally:
        client.config_set("notify-keyspace-events", "Kl")
        client.close()


def load(broker: str, tmp_path: Path, redis_url: str = "", **extra: str) -> Settings:
    return _load(
        {
            "SPARK_INTEGRATIONS_HOME": str(tmp_path),
            "SPARK_INTEGRATIONS_BROKER_URL": broker,
            "SPARK_INTEGRATIONS_RESULT_BACKEND": redis_url or broker,
            "SPARK_INTEGRATIONS_REDIS_URL": redis_url or broker,
            "SPARK_INTEGRATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
            "SPARK_INTEGRATIONS_SECRET_KEYS": KEY,
            **{f"SPARK_INTEGRATIONS_{name}": value for name, value in extra.items()},
        }
    )


def fetch_check(settings: Settings) -> Check:
    check = broker_fetch_check(settings, timeout=5)
    assert check is not None and check.name == "broker_fetch"
    return check


def test_a_broker_sending_list_events_passes_and_the_reclaim_time_is_stated(
    server: EmbeddedRedis, flags: redis.Redis, tmp_path: Path
) -> None:
    check = fetch_check(load(f"redis+socket://{server.socket}", tmp_path, RECLAIM_AFTER="40"))
    assert check.ok and not check.warning
    assert check.detail.startswith("reliable: a dead worker's messages come back about 40 s")
    assert "at most 60 s" in check.detail
    assert "sends the keyspace notifications workers wake on" in check.detail
    flags.config_set("notify-keyspace-events", "KA")  # A: every class of event, lists included
    check = fetch_check(load(f"redis+socket://{server.socket}", tmp_path))
    assert check.ok and not check.warning and "about 60 s" in check.detail


@pytest.mark.parametrize(
    ("configured", "missing"),
    [("", "Kl"), ("Ex", "Kl"), ("El", "K"), ("Kx", "l")],
)
def test_a_broker_without_list_events_is_a_warning_naming_the_line_to_set(
    server: EmbeddedRedis, flags: redis.Redis, tmp_path: Path, configured: str, missing: str
) -> None:
    flags.config_set("notify-keyspace-events", configured)
    now = flags.config_get("notify-keyspace-events")["notify-keyspace-events"]
    check = fetch_check(load(f"redis+socket://{server.socket}", tmp_path))
    assert check.ok and check.warning
    assert "the broker sends no keyspace notifications of lists" in check.detail
    assert "workers turn them on when the broker allows CONFIG SET" in check.detail
    assert "take every 0.1 s" in check.detail
    line = check.detail.rpartition("In redis.conf: ")[2]
    assert line == f"notify-keyspace-events {now}{missing}"
    # The line it names is one the server takes, and then the check passes.
    flags.config_set("notify-keyspace-events", line.split()[1])
    assert not fetch_check(load(f"redis+socket://{server.socket}", tmp_path)).warning


def test_a_broker_refusing_config_is_a_warning_saying_it_could_not_be_read(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    url = f"redis+socket://noconfig:{PASSWORD}@{server.socket}"
    check = fetch_check(load(url, tmp_path))
    assert check.ok and check.warning
    assert "could not be read (CONFIG GET refused" in check.detail
    assert "take every 0.1 s" in check.detail
    assert PASSWORD not in check.detail


def test_kombu_fetch_says_what_it_loses_and_amqp_has_no_such_check(tmp_path: Path) -> None:
    nowhere = f"redis+socket://{tmp_path}/nobody.sock"  # no I/O for either
    check = fetch_check(load(nowhere, tmp_path, BROKER_FETCH="kombu", VISIBILITY_TIMEOUT="600"))
    assert check.ok and not check.warning
    assert check.detail.startswith("kombu (SPARK_INTEGRATIONS_BROKER_FETCH=kombu)")
    assert "visibility timeout (600 s)" in check.detail and "is lost" in check.detail
    amqp = load("amqp://guest:guest@127.0.0.1:1//", tmp_path, redis_url=nowhere)
    assert broker_fetch_check(amqp, timeout=1) is None


def test_an_unreachable_broker_fails_without_its_password(tmp_path: Path) -> None:
    check = fetch_check(load(f"redis://fleet:{PASSWORD}@127.0.0.1:1/0", tmp_path))
    assert not check.ok and "is unreachable" in check.detail
    assert PASSWORD not in check.detail


def test_doctor_states_the_fetch_after_the_broker_and_only_when_it_answers(
    server: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(broker: str) -> list[Check]:
        monkeypatch.setattr(settings_module, "load", lambda: load(broker, tmp_path))
        return doctor.run_checks()

    try:
        names = [c.name for c in run(f"redis+socket://{server.socket}")]
        down = run(f"redis+socket://{tmp_path}/nobody.sock")
    finally:
        dispose_engines(f"sqlite:///{tmp_path / 'store.db'}")
    assert names[names.index("broker") + 1] == "broker_fetch"
    assert "broker_fetch" not in [c.name for c in down]
    assert not next(c for c in down if c.name == "broker").ok
