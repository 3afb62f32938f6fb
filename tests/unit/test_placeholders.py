"""A ``{config_key}`` placeholder in a declared base URL takes one escaped segment: no config
value can move requests to another host, add user-info, a port, a query or a fragment."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from spark_integrations.connectors.manifest import load_manifest

MANIFEST = """\
name: tenanted
base_url: https://{tenant}.api.tenanted.test/v1/{org}
config_keys: [tenant, org]
auth: {bearer: {secret: token}}
"""


@pytest.mark.parametrize(
    "value",
    [
        "evil.test/",
        "evil.test#",
        "evil.test?x=",
        "a@evil.test",
        "evil.test:443",
        "evil.test\\",
        "..",
        "%2e%2e",
        "evil.test%2F",
        "x y",
    ],
)
def test_a_config_value_stays_inside_its_segment(tmp_path: Path, value: str) -> None:
    path = tmp_path / "tenanted.yaml"
    path.write_text(textwrap.dedent(MANIFEST), encoding="utf-8")
    cls = load_manifest(path)
    try:
        client = cls({"tenant": value, "org": value}, {"token": "t"}, scope="c")
    except Exception as exc:  # refused: in one sentence, and then nothing is sent anywhere
        assert "config" in str(exc)
        return
    parts = urlsplit(client.url("/items"))
    assert parts.hostname is not None and parts.hostname.endswith(".api.tenanted.test")
    assert parts.port is None and not parts.query and not parts.fragment
    assert "@" not in parts.netloc
    assert parts.path.startswith("/v1/") and parts.path.endswith("/items")
    assert "/../" not in parts.path
