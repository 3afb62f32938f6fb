"""settings.load: embedded defaults, server-mode validation, and secrets kept out of messages."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from spark_integrations import settings
from spark_integrations.constants import (
    DEFAULT_PUBLIC_URL,
    DEFAULT_TASK_TIME_LIMIT,
    DEFAULT_VISIBILITY_TIMEOUT,
)
from spark_integrations.errors import ConfigurationError

P = "SPARK_INTEGRATIONS_"


def server_env(fernet_key: str, **overrides: str) -> dict[str, str]:
    """A valid server-mode environment on Redis and PostgreSQL, with overrides by short name."""
    env = {
        P + "BROKER_URL": "redis://127.0.0.1:6379/0",
        P + "DATABASE_URL": "postgresql+psycopg://u@db.example/fleet",
        P + "SECRET_KEYS": fernet_key,
    }
    for name, value in overrides.items():
        env[P + name] = value
    return env


# --- embedded mode ------------------------------------------------------------------------------


def test_embedded_defaults(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = settings.load({P + "HOME": str(home)})
    assert s.mode == "embedded"
    assert s.embedded
    assert not s.broker_is_amqp
    assert s.home == home
    assert s.database_url == f"sqlite:///{home / 'store.db'}"
    assert s.broker_url == f"redis+socket://{home / 'redis.sock'}"
    assert s.result_backend == s.broker_url
    assert s.redis_url == f"unix://{home / 'redis.sock'}"
    assert s.redis_socket == home / "redis.sock"
    assert s.public_url == DEFAULT_PUBLIC_URL
    assert s.visibility_timeout == DEFAULT_VISIBILITY_TIMEOUT
    assert s.task_time_limit == DEFAULT_TASK_TIME_LIMIT
    assert s.task_time_limit < s.visibility_timeout
    assert s.flower_basic_auth is None


def test_embedded_secret_key_created_0600_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {P + "HOME": str(home)}
    first = settings.load(env)
    key_file = home / "secret.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_keys) == 1
    Fernet(first.secret_keys[0])  # a valid key
    assert key_file.read_text().strip() == first.secret_keys[0]
    # No temporary file is left beside it.
    assert sorted(p.name for p in home.iterdir()) == ["secret.key"]

    second = settings.load(env)
    assert second.secret_keys == first.secret_keys
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_embedded_secret_key_concurrent_first_loads_agree(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {P + "HOME": str(home)}
    results: list[tuple[str, ...]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        try:
            results.append(settings.load(env).secret_keys)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert sorted(p.name for p in home.iterdir()) == ["secret.key"]


def test_embedded_explicit_secret_keys_write_no_key_file(tmp_path: Path, fernet_key: str) -> None:
    home = tmp_path / "home"
    s = settings.load({P + "HOME": str(home), P + "SECRET_KEYS": fernet_key})
    assert s.secret_keys == (fernet_key,)
    assert not (home / "secret.key").exists()


def test_embedded_invalid_key_file_is_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.key").write_text("garbage-not-a-key\n")
    with pytest.raises(ConfigurationError) as info:
        settings.load({P + "HOME": str(home)})
    assert str(home / "secret.key") in str(info.value)
    assert "garbage-not-a-key" not in str(info.value)


def test_home_defaults_to_xdg_data_home(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    s = settings.load({"XDG_DATA_HOME": str(xdg)})
    assert s.home == xdg / "spark-integrations"
    assert s.database_url == f"sqlite:///{xdg / 'spark-integrations' / 'store.db'}"
    assert (xdg / "spark-integrations" / "secret.key").is_file()


def test_home_defaults_to_local_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    s = settings.load({})
    assert s.home == tmp_path / "user" / ".local" / "share" / "spark-integrations"


def test_spark_home_beats_xdg(tmp_path: Path) -> None:
    s = settings.load({P + "HOME": str(tmp_path / "h"), "XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert s.home == tmp_path / "h"


def test_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every process of the fleet must derive the same socket and store from HOME, whatever its
    # working folder; and the embedded Redis changes its own working folder to HOME/redis
    # (--dir) before it opens its log file and socket, so relative paths there point elsewhere.
    monkeypatch.chdir(tmp_path)
    s = settings.load({P + "HOME": "data"})
    assert s.home.is_absolute()
    assert s.home == tmp_path / "data"
    assert s.redis_socket.is_absolute()
    assert s.database_url == f"sqlite:///{tmp_path / 'data' / 'store.db'}"


def test_long_home_socket_fits_and_is_stable(tmp_path: Path) -> None:
    home = tmp_path.joinpath(*(["a-rather-long-folder-name"] * 8))
    assert len(os.fsencode(home / "redis.sock")) > settings.MAX_SOCKET_PATH
    sock = settings.embedded_redis_socket(home)
    assert len(os.fsencode(sock)) <= 107
    assert settings.embedded_redis_socket(home) == sock
    s1 = settings.load({P + "HOME": str(home)})
    s2 = settings.load({P + "HOME": str(home)})
    assert s1.redis_socket == s2.redis_socket == sock
    assert s1.broker_url == f"redis+socket://{sock}"
    assert s1.redis_url == f"unix://{sock}"
    # Another deep HOME gets another socket.
    other = settings.embedded_redis_socket(home.parent / "b-rather-long-folder-name")
    assert other != sock


def test_short_home_socket_is_in_home(tmp_path: Path) -> None:
    assert settings.embedded_redis_socket(tmp_path) == tmp_path / "redis.sock"


# --- server mode --------------------------------------------------------------------------------


def test_server_mode_redis(fernet_key: str) -> None:
    s = settings.load(server_env(fernet_key))
    assert s.mode == "server"
    assert not s.embedded
    assert s.broker_url == "redis://127.0.0.1:6379/0"
    assert s.result_backend == s.broker_url
    assert s.redis_url == s.broker_url
    assert s.secret_keys == (fernet_key,)


def test_server_mode_socket_broker_gives_unix_redis_url(fernet_key: str) -> None:
    s = settings.load(server_env(fernet_key, BROKER_URL="redis+socket:///run/redis.sock"))
    assert s.broker_url == "redis+socket:///run/redis.sock"
    assert s.redis_url == "unix:///run/redis.sock"


def test_server_mode_several_keys_newest_first(fernet_key: str) -> None:
    old = Fernet.generate_key().decode()
    s = settings.load(server_env(fernet_key, SECRET_KEYS=f" {fernet_key} , {old} ,"))
    assert s.secret_keys == (fernet_key, old)


@pytest.mark.parametrize("set_var", ["BROKER_URL", "DATABASE_URL"])
def test_server_mode_requires_secret_keys(set_var: str) -> None:
    value = {
        "BROKER_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": "postgresql://u@h/db",
    }[set_var]
    with pytest.raises(ConfigurationError) as info:
        settings.load({P + set_var: value})
    assert P + "SECRET_KEYS" in str(info.value)


def test_server_mode_blank_secret_keys_is_missing(fernet_key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.load(server_env(fernet_key, SECRET_KEYS="   "))
    assert P + "SECRET_KEYS" in str(info.value)


def test_bad_fernet_key_names_position_not_key(fernet_key: str) -> None:
    bad = "ThisIsNotAFernetKeyButLooksSecret"
    with pytest.raises(ConfigurationError) as info:
        settings.load(server_env(fernet_key, SECRET_KEYS=f"{fernet_key},{bad}"))
    message = str(info.value)
    assert P + "SECRET_KEYS" in message
    assert "position 2" in message
    assert bad not in message
    assert fernet_key not in message


def test_truncated_fernet_key_not_echoed(fernet_key: str) -> None:
    truncated = fernet_key[:-4]
    with pytest.raises(ConfigurationError) as info:
        settings.load(server_env(fernet_key, SECRET_KEYS=truncated))
    assert "position 1" in str(info.value)
    assert truncated not in str(info.value)
    assert truncated not in repr(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BROKER_URL", "redis://host:notaport/0"),
        ("BROKER_URL", "http://x"),
        ("BROKER_URL", "redis://"),
        ("BROKER_URL", "redis+socket://"),
        ("RESULT_BACKEND", "redis://host:99999999/0"),
        ("RESULT_BACKEND", "amqp://guest@rabbit//"),
        ("REDIS_URL", "memcached://x"),
        ("REDIS_URL", "redis://h:port/0"),
        ("PUBLIC_URL", "ftp://example.org"),
    ],
)
def test_bad_url_names_its_variable(fernet_key: str, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.load(server_env(fernet_key, **{name: value}))
    assert P + name in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BROKER_URL", "redis://:Pw-S3cret-99@host:badport/0"),
        ("BROKER_URL", "amqp://user:Pw-S3cret-99@[host//"),
        ("BROKER_URL", "http://user:Pw-S3cret-99@host/"),
        ("DATABASE_URL", "postgresql://u:Pw-S3cret-99@h:badport/db"),
        ("DATABASE_URL", "postgresql+psycopg2://u:Pw-S3cret-99@h/db"),
        ("DATABASE_URL", "mysql://u:Pw-S3cret-99@h/db"),
        ("REDIS_URL", "redis://:Pw-S3cret-99@host:99999/0"),
    ],
)
def test_url_errors_never_echo_passwords(fernet_key: str, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.load(server_env(fernet_key, **{name: value}))
    assert P + name in str(info.value)
    assert "Pw-S3cret-99" not in str(info.value)


def test_malformed_broker_reported_before_missing_keys() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.load({P + "BROKER_URL": "redis://host:notaport/0"})
    assert P + "BROKER_URL" in str(info.value)


def test_amqp_broker_needs_result_backend(fernet_key: str) -> None:
    env = server_env(fernet_key, BROKER_URL="amqp://guest:guest@127.0.0.1:5672//")
    with pytest.raises(ConfigurationError) as info:
        settings.load(env)
    assert P + "RESULT_BACKEND" in str(info.value)


def test_amqp_broker_needs_redis_url(fernet_key: str) -> None:
    env = server_env(
        fernet_key,
        BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
        RESULT_BACKEND="redis://127.0.0.1:6379/1",
    )
    with pytest.raises(ConfigurationError) as info:
        settings.load(env)
    assert P + "REDIS_URL" in str(info.value)


def test_amqp_broker_complete(fernet_key: str) -> None:
    s = settings.load(
        server_env(
            fernet_key,
            BROKER_URL="amqps://guest:guest@rabbit:5671//",
            RESULT_BACKEND="redis://127.0.0.1:6379/1",
            REDIS_URL="redis://127.0.0.1:6379/2",
        )
    )
    assert s.broker_is_amqp
    assert s.result_backend == "redis://127.0.0.1:6379/1"
    assert s.redis_url == "redis://127.0.0.1:6379/2"


@pytest.mark.parametrize("missing", ["BROKER_URL", "DATABASE_URL"])
def test_server_mode_needs_both_urls(fernet_key: str, missing: str) -> None:
    env = server_env(fernet_key)
    del env[P + missing]
    with pytest.raises(ConfigurationError) as info:
        settings.load(env)
    assert P + missing in str(info.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u:pw@h:5433/db", "postgresql+psycopg://u:pw@h:5433/db"),
    ],
)
def test_postgresql_url_gets_psycopg_driver(fernet_key: str, given: str, expected: str) -> None:
    s = settings.load(server_env(fernet_key, DATABASE_URL=given))
    assert s.database_url == expected


def test_sqlite_database_url_accepted_in_server_mode(fernet_key: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    s = settings.load(server_env(fernet_key, DATABASE_URL=url))
    assert s.mode == "server"
    assert s.database_url == url


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "mysql+pymysql://u:p@h/db", "postgresql+asyncpg://u@h/db", "not a url"],
)
def test_unsupported_database_url_refused(fernet_key: str, url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.load(server_env(fernet_key, DATABASE_URL=url))
    assert P + "DATABASE_URL" in str(info.value)


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "visibility"), [("900", "900"), ("1000", "900"), ("61", "60")])
def test_time_limit_must_stay_below_visibility_timeout(
    tmp_path: Path, limit: str, visibility: str
) -> None:
    env = {
        P + "HOME": str(tmp_path),
        P + "TASK_TIME_LIMIT": limit,
        P + "VISIBILITY_TIMEOUT": visibility,
    }
    with pytest.raises(ConfigurationError) as info:
        settings.load(env)
    assert P + "TASK_TIME_LIMIT" in str(info.value)
    assert P + "VISIBILITY_TIMEOUT" in str(info.value)


def test_time_limit_below_visibility_timeout_accepted(tmp_path: Path) -> None:
    env = {P + "HOME": str(tmp_path), P + "TASK_TIME_LIMIT": "59", P + "VISIBILITY_TIMEOUT": "60"}
    s = settings.load(env)
    assert (s.task_time_limit, s.visibility_timeout) == (59, 60)


@pytest.mark.parametrize("name", ["TASK_TIME_LIMIT", "VISIBILITY_TIMEOUT", "MAX_DELIVERIES"])
@pytest.mark.parametrize("value", ["abc", "1.5", "0", "-3", "10s"])
def test_numbers_must_be_positive_integers(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.load({P + "HOME": str(tmp_path), P + name: value})
    assert P + name in str(info.value)


def test_flower_basic_auth_needs_user_and_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.load({P + "HOME": str(tmp_path), P + "FLOWER_BASIC_AUTH": "justapassword"})
    assert P + "FLOWER_BASIC_AUTH" in str(info.value)
    assert "justapassword" not in str(info.value)


# --- secrets never shown ------------------------------------------------------------------------


def test_repr_hides_secret_keys_and_flower_auth(fernet_key: str) -> None:
    old = Fernet.generate_key().decode()
    auth = "admin:Flower-Pa55word-xyz"
    s = settings.load(
        server_env(fernet_key, SECRET_KEYS=f"{fernet_key},{old}", FLOWER_BASIC_AUTH=auth)
    )
    assert s.flower_basic_auth == auth
    for text in (repr(s), str(s), f"{s!r}"):
        assert fernet_key not in text
        assert old not in text
        assert "Flower-Pa55word-xyz" not in text
    assert "broker_url" in repr(s)  # the rest is shown


def test_embedded_repr_hides_generated_key(tmp_path: Path) -> None:
    s = settings.load({P + "HOME": str(tmp_path / "h")})
    assert s.secret_keys[0] not in repr(s)


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = settings.load({P + "HOME": str(tmp_path / "h")})
    with pytest.raises(AttributeError):
        s.mode = "server"  # type: ignore[misc]


def test_repr_hides_url_passwords() -> None:
    s = settings.load(
        {
            "SPARK_INTEGRATIONS_BROKER_URL": "amqp://guest:hunter2@127.0.0.1:5672//",
            "SPARK_INTEGRATIONS_RESULT_BACKEND": "redis://:redispw@127.0.0.1:6379/1",
            "SPARK_INTEGRATIONS_REDIS_URL": "redis://:redispw@127.0.0.1:6379/1",
            "SPARK_INTEGRATIONS_DATABASE_URL": "postgresql://fleet:dbpw@127.0.0.1/fleet",
            "SPARK_INTEGRATIONS_SECRET_KEYS": Fernet.generate_key().decode(),
        }
    )
    text = repr(s)
    for secret in ("hunter2", "redispw", "dbpw"):
        assert secret not in text
    assert "amqp://guest:***@127.0.0.1:5672//" in text
