"""Commands the tests run in new processes: output captured as text, a timeout always."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` to completion (in ``cwd``, with ``env`` when given); never raises on a
    non-zero exit: the caller asserts on the result."""
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else dict(env),
        timeout=timeout,
    )


def run_pytest(
    folder: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest in a new process from ``folder``, with an empty pytest.ini written there first so
    no configuration of a folder above applies; quiet, with the skip reasons."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args]
    return run(pytest, cwd=folder, env=env, timeout=300)
