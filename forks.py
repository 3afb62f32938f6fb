"""Per-process caches, reset in one place after ``fork()``.

A prefork worker's pool children start as copies of their parent: an engine's pool, an HTTP
session's keep-alive connections or a Redis client built before the fork would be shared between
processes, sockets and all. Every module that keeps such a per-process cache (store engines,
HTTP sessions, the coordination client, cached connections and connector instances, secret
boxes, remembered tokens) registers a hook here with :func:`on_fork`, and
:func:`reset_after_fork` runs them all in the child.

It runs from Celery's ``worker_process_init`` signal (:mod:`workers.signals`) and from
``os.register_at_fork`` for any other fork; each process resets once, whichever comes first.
A hook drops what it holds without closing it: the sockets belong to the parent, which still
uses them.

A neutral module beside :mod:`constants` and :mod:`errors`: every package may import it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

__all__ = ["on_fork", "reset_after_fork"]

log = logging.getLogger(__name__)

_hooks: list[Callable[[], None]] = []
# The process whose caches are current: a hook never runs in the process that built them.
_owner = os.getpid()


def on_fork(hook: Callable[[], None]) -> Callable[[], None]:
    """Register ``hook`` to run in a child after fork (usable as a decorator); returns it."""
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def reset_after_fork() -> None:
    """Run every registered hook, once per process; a no-op in the process that built them."""
    global _owner
    pid = os.getpid()
    if pid == _owner:
        return
    _owner = pid
    for hook in list(_hooks):
        try:
            hook()
        except Exception:  # one cache that fails to reset must not leave the others shared
            log.exception("resetting %r after fork failed", hook)


os.register_at_fork(after_in_child=reset_after_fork)
