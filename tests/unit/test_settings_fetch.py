"""settings.load: how a Redis broker is consumed (BROKER_FETCH) and when a dead worker's messages
are handed out again (RECLAIM_AFTER)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from spark_integrations import settings
from spark_integrations.constants import BROKER_FETCH_MODES, DEFAULT_RECLAIM_AFTER
from spark_integrations.errors import ConfigurationError
from tests.unit.conftest import run_cli

P = "SPARK_INTEGRATIONS_"


def _server(**overrides: str) -> dict[str, str]:
    env = {
        P + "BROKER_URL": "redis://127.0.0.1:6379/0",
        P + "DATABASE_URL": "postgresql+psycopg://u@db.example/fleet",
        P + "SECRET_KEYS": Fernet.generate_key().decode(),
    }
    env.update({P + name: value for name, value in overrides.items()})
    return env


def _embedded(home: Path, **overrides: str) -> dict[str, str]:
    return {P + "HOME": str(home), **{P + name: value for name, value in overrides.items()}}


def _one_sentence(message: str) -> None:
    assert "\n" not in message
    assert message.endswith(".")
    assert message.rstrip(".").count(". ") == 0, message


def test_defaults_are_reliable_fetch_and_60_seconds(tmp_path: Path) -> None:
    assert BROKER_FETCH_MODES[0] == "reliable"
    assert DEFAULT_RECLAIM_AFTER == 60
    for s in (settings.load(_embedded(tmp_path)), settings.load(_server())):
        assert s.broker_fetch == "reliable"
        assert s.reclaim_after == 60


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("reliable", "reliable"),
        ("kombu", "kombu"),
        (" Kombu ", "kombu"),
        ("RELIABLE", "reliable"),
        ("", "reliable"),
        ("   ", "reliable"),
    ],
)
def test_broker_fetch_values(tmp_path: Path, given: str, expected: str) -> None:
    assert settings.load(_embedded(tmp_path, BROKER_FETCH=given)).broker_fetch == expected
    assert settings.load(_server(BROKER_FETCH=given)).broker_fetch == expected


@pytest.mark.parametrize("given", ["fast", "brpop", "reliable,kombu", "redis", "0"])
def test_broker_fetch_other_values_are_one_sentence(tmp_path: Path, given: str) -> None:
    for env in (_embedded(tmp_path, BROKER_FETCH=given), _server(BROKER_FETCH=given)):
        with pytest.raises(ConfigurationError) as info:
            settings.load(env)
        message = str(info.value)
        assert P + "BROKER_FETCH" in message
        assert "reliable" in message and "kombu" in message
        assert repr(given.strip().lower()) in message
        _one_sentence(message)


@pytest.mark.parametrize(
    ("given", "expected"), [("1", 1), ("5", 5), (" 7 ", 7), ("3600", 3600), ("86400", 86400)]
)
def test_reclaim_after_values(tmp_path: Path, given: str, expected: int) -> None:
    assert settings.load(_embedded(tmp_path, RECLAIM_AFTER=given)).reclaim_after == expected
    assert settings.load(_server(RECLAIM_AFTER=given)).reclaim_after == expected


@pytest.mark.parametrize("given", ["abc", "1.5", "0", "-3", "10s", "1e3", "86401", "10" * 12])
def test_reclaim_after_must_be_a_positive_whole_number(tmp_path: Path, given: str) -> None:
    for env in (_embedded(tmp_path, RECLAIM_AFTER=given), _server(RECLAIM_AFTER=given)):
        with pytest.raises(ConfigurationError) as info:
            settings.load(env)
        assert P + "RECLAIM_AFTER" in str(info.value)
        _one_sentence(str(info.value))


def test_reclaim_after_is_independent_of_the_visibility_timeout(tmp_path: Path) -> None:
    # Reclaiming does not wait on a visibility timeout: a reclaim time above it, or below the
    # task time limit, is valid (a living worker's messages are never reclaimed).
    s = settings.load(
        _embedded(tmp_path, RECLAIM_AFTER="2000", VISIBILITY_TIMEOUT="900", TASK_TIME_LIMIT="300")
    )
    assert (s.reclaim_after, s.visibility_timeout, s.task_time_limit) == (2000, 900, 300)
    assert settings.load(_embedded(tmp_path, RECLAIM_AFTER="3")).reclaim_after == 3


@pytest.mark.parametrize(("name", "value"), [("BROKER_FETCH", "fast"), ("RECLAIM_AFTER", "0")])
def test_command_line_says_one_sentence(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(P + name, value)
    code, out, err = run_cli(capsys, "down")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert P + name in err
