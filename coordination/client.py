"""The coordination Redis client: redis-py's errors leave it as one :class:`CoordinationError`.

:class:`CoordinationRedis` is a ``redis.Redis`` whose commands and pipelines translate
``redis.RedisError`` (a Redis that cannot be reached, times out, or refuses a command) into
:class:`errors.CoordinationError` once, here, so the task layer catches the fleet's error and
never a library's. The message names the Redis (its password hidden) and the failure's kind,
never a key or a value.

Lua scripts: a single script call reloads a script Redis forgot by itself (redis-py's
``Script``); a pipeline of ``EVALSHA`` (:func:`coordination.scripts.queue_script`) cannot, as
its other commands ran already. Then the client loads every script registered on it again and
raises :class:`ScriptsReloadedError` (a :class:`CoordinationError`): the caller treats that
round trip as failed and tries again.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from spark_integrations.coordination.scripts import load_scripts
from spark_integrations.errors import CoordinationError
from spark_integrations.settings import hide_password

__all__ = ["CoordinationRedis", "ScriptsReloadedError", "connect"]


class ScriptsReloadedError(CoordinationError):
    """Raised when a pipeline met a script Redis had forgotten (a restart, ``SCRIPT FLUSH``);
    the scripts are loaded again, and the pipeline's round trip counts as failed."""


def _translated(client: CoordinationRedis, exc: redis.RedisError) -> CoordinationError:
    where = hide_password(client.url)
    return CoordinationError(f"the coordination Redis at {where} failed ({type(exc).__name__}).")


class CoordinationRedis(redis.Redis):
    """A ``redis.Redis`` that raises :class:`CoordinationError` instead of redis-py's errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Where it connects (messages hide the password); set by :func:`connect`.
        self.url = "redis"
        #: Every script registered on this client, reloaded together when Redis forgot them.
        self.scripts: list[Script] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except NoScriptError:
            raise  # redis-py's Script loads it and calls again
        except redis.RedisError as exc:
            raise _translated(self, exc) from None

    def register_script(self, script: Any) -> Script:
        registered = super().register_script(script)
        self.scripts.append(registered)
        return registered

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> CoordinationPipeline:
        return CoordinationPipeline(self, transaction, shard_hint)

    def reload_scripts(self) -> None:
        """Load every script registered on this client again, in one round trip."""
        if self.scripts:
            load_scripts(self, self.scripts)


class CoordinationPipeline(Pipeline):
    """A pipeline of :class:`CoordinationRedis`: its ``execute`` translates errors too."""

    def __init__(self, client: CoordinationRedis, transaction: bool, shard_hint: Any) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, transaction, shard_hint)
        self.owner = client

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except NoScriptError:
            self.owner.reload_scripts()
            raise ScriptsReloadedError(
                "the coordination Redis had forgotten the fleet's scripts (restarted?); they "
                "are loaded again."
            ) from None
        except redis.RedisError as exc:
            raise _translated(self.owner, exc) from None


def connect(url: str, **options: Any) -> CoordinationRedis:
    """A client of the coordination Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``)."""
    client = cast(CoordinationRedis, CoordinationRedis.from_url(url, **options))
    client.url = url
    return client
