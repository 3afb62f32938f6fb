"""What every entry point does before its work: read settings, bring up or check the parts.

In embedded mode an entry point starts the embedded Redis on demand and brings the store to the
newest migration by itself. In server mode migrations are explicit: a store behind the newest
migration is refused with a sentence saying what to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import spark_integrations.settings as settings_module
from spark_integrations import metrics
from spark_integrations.connectors.urlpolicy import allow_http_hosts
from spark_integrations.errors import StoreError
from spark_integrations.migrations import runner
from spark_integrations.settings import Settings
from spark_integrations.store import SecretBox, session_scope, store_error
from spark_integrations.workers.embedded import EmbeddedRedis, secure_home

__all__ = ["Runtime", "check_store", "prepare"]


@dataclass
class Runtime:
    """Settings plus handles on the parts an entry point uses."""

    settings: Settings

    @cached_property
    def box(self) -> SecretBox:
        """The encrypter of secrets over the configured keys."""
        return SecretBox(self.settings.secret_keys)

    @cached_property
    def embedded_redis(self) -> EmbeddedRedis:
        """The embedded Redis server of this HOME (embedded mode)."""
        return EmbeddedRedis(self.settings.home, self.settings.redis_socket)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A store session in one transaction; a failing store is a :class:`StoreError`."""
        with session_scope(self.settings.database_url) as session:
            yield session


def check_store(s: Settings) -> str:
    """Make sure the store is at the newest migration, migrating it in embedded mode."""
    try:
        if s.embedded:
            return runner.upgrade(s.database_url)
        current = runner.current_revision(s.database_url)
    except OperationalError as exc:
        raise store_error(s.database_url, exc) from None
    head = runner.head_revision()
    if current != head:
        raise StoreError(
            f"the store is at migration {current or 'base (empty)'}, behind this fleet's {head}; "
            "run `spark-integrations db upgrade`."
        )
    return current


def prepare(*, redis: bool = True, store: bool = True) -> Runtime:
    """Load the settings and bring up (embedded) or check (server) what the caller needs."""
    s = settings_module.load()
    if s.embedded:
        secure_home(s.home)
    allow_http_hosts(s.allow_http_hosts)
    # The fleet's metrics go to its coordination Redis (a process never configured counts into
    # nothing: library use, tests).
    metrics.configure(s.redis_url)
    rt = Runtime(s)
    if redis and s.embedded:
        rt.embedded_redis.ensure_running()
    if store:
        check_store(s)
    return rt
