"""Lua scripts on pipelines, without redis-py's extra round trip.

redis-py's ``Script`` objects, queued on a pipeline, first ask Redis ``SCRIPT EXISTS`` for every
script in it: one more round trip per pipeline, which on the hot path of a call costs as much as
the pipeline itself. Here the scripts are loaded once per client (``SCRIPT LOAD``) and queued as
plain ``EVALSHA``. Should Redis forget them (a restart, ``SCRIPT FLUSH``), the pipeline fails
with ``redis.exceptions.NoScriptError``; the caller loads them again with :func:`load_scripts`
and treats that one attempt as not made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.commands.core import Script

__all__ = ["load_scripts", "queue_script"]


def queue_script(pipe: Any, script: Script, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queue ``script`` on ``pipe`` as a plain EVALSHA (the script must be loaded)."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def load_scripts(client: Any, scripts: Iterable[Script]) -> None:
    """``SCRIPT LOAD`` every script on ``client`` in one round trip."""
    pipe = client.pipeline(transaction=False)
    for script in scripts:
        pipe.script_load(script.script)
    pipe.execute()
