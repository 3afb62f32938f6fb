"""forks: every per-process cache of the fleet is reset in one place after fork, once."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import pytest

from spark_integrations import forks
from spark_integrations.connectors import http
from spark_integrations.store import engine
from spark_integrations.tasks import context, lookup, tokens


def in_child(check: Callable[[], bool]) -> bool:
    """Fork, run ``check`` in the child, and return what it said."""
    with warnings.catch_warnings():
        # Python warns that forking a process with threads may deadlock; the child only reads.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            code = 0 if check() else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    return os.WEXITSTATUS(status) == 0


def test_a_forked_child_starts_without_its_parents_caches(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = http.http_session()
    engine.engine_for(sqlite_url)
    monkeypatch.setitem(lookup._cache, "conn-1", (0.0, object()))  # type: ignore[arg-type]
    monkeypatch.setitem(tokens._tokens, "conn-1", object())  # type: ignore[arg-type]
    monkeypatch.setattr(context, "_redis", object())

    def reset() -> bool:
        return (
            http._session is None
            and http.http_session() is not session
            and not engine._engines
            and not lookup._cache
            and not tokens._tokens
            and context._redis is None
        )

    assert in_child(reset)
    # The parent keeps what it built.
    assert http.http_session() is session
    assert sqlite_url in engine._engines
    assert "conn-1" in lookup._cache and "conn-1" in tokens._tokens


def test_hooks_run_once_per_process_and_never_in_the_parent() -> None:
    runs: list[int] = []
    hook = forks.on_fork(lambda: runs.append(os.getpid()))
    try:
        forks.reset_after_fork()  # the process that built the caches: nothing to reset
        assert runs == []

        def once() -> bool:
            forks.reset_after_fork()  # Celery's worker_process_init comes after os' own hook
            return len(runs) == 1 and runs[0] == os.getpid()

        assert in_child(once)
    finally:
        forks._hooks.remove(hook)


def test_a_failing_hook_does_not_stop_the_others() -> None:
    def broken() -> None:
        raise RuntimeError("cannot reset")

    forks._hooks.insert(0, broken)  # first, so the others come after it
    http.http_session()
    try:
        assert in_child(lambda: http._session is None)
    finally:
        forks._hooks.remove(broken)
