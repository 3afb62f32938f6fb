"""The GitHub connector passes the contract suite on GitHub's documented answers.

The recordings are read from ``recordings/github.yaml``; two things in them cannot be fixed
text and are filled in here: the GitHub App's private key (``PRIVATE_KEY``: a key generated for
the test run) and epoch times in ``x-ratelimit-reset`` (``NOW+N``: N seconds from the moment the
test runs, since the suite compares waits to the second).
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from spark_integrations.connectors.providers.github import GitHub
from spark_integrations.testing import ConnectorContract, recordings

RECORDINGS = Path(__file__).parent / "recordings" / "github.yaml"
_NOW = re.compile(r"^NOW\+(\d+)$")


def _private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _fill(value: Any, key: str | None, now: int | None) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, key, now) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, key, now) for v in value]
    if value == "PRIVATE_KEY" and key is not None:
        return key
    if isinstance(value, str) and now is not None and (found := _NOW.match(value)):
        return str(now + int(found.group(1)))
    return value


def github_recordings() -> dict[str, Any]:
    """The recordings with a fresh private key (reset times are filled in per test)."""
    data = yaml.safe_load(RECORDINGS.read_text(encoding="utf-8"))
    return dict(_fill(data, _private_key(), None))


_ENTRIES = ("auth_entry", "action_entry", "stream_entry", "error_entry", "rate_limit_entry")


class TestGitHubContract(ConnectorContract):
    connector = GitHub
    recordings = recordings(github_recordings())

    @pytest.fixture(autouse=True)
    def _reset_times_from_now(self, request: pytest.FixtureRequest) -> None:
        """Each recorded answer's NOW+N becomes an epoch time N seconds from now."""
        now = int(time.time())
        for name in (*_ENTRIES, "leak_entry"):
            if name not in request.fixturenames:
                continue
            entry = request.getfixturevalue(name)
            entry = entry[1] if name == "leak_entry" else entry
            for part in ("response", "responses", "pages"):
                if part in entry:
                    entry[part] = _fill(copy.deepcopy(entry[part]), None, now)
