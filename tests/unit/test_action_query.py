"""An action's params sent in the query of a JSON connector (GET, DELETE, HEAD) read as its
stream parameters do: booleans as ``true``/``false`` (not Python's ``True``), objects as JSON,
lists as repeated parameters, unicode percent-encoded as UTF-8."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.manifest import load_manifest

MANIFEST = """\
name: lister
base_url: https://api.lister.test
auth: {bearer: {secret: token}}
actions:
  - name: list
    method: GET
    path: /things
    optional: {archived: boolean, limit: integer, filter: object, types: array, q: string}
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Connector]:
    path = tmp_path / "lister.yaml"
    path.write_text(textwrap.dedent(MANIFEST), encoding="utf-8")
    with requests.Session() as session:
        yield load_manifest(path)({}, {"token": "t-1"}, session=session, scope="c1")


def test_query_params_of_a_json_connector_are_sent_as_text(client: Connector) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get("https://api.lister.test/things", json=[])
        client.run_action(
            "list",
            {
                "archived": False,
                "limit": 20,
                "filter": {"b": 1, "a": "x"},
                "types": ["public", "private"],
                "q": "café ☕",
            },
        )
        query = parse_qsl(urlsplit(str(rsps.calls[0].request.url)).query)
    assert query == [
        ("archived", "false"),
        ("limit", "20"),
        ("filter", '{"a":"x","b":1}'),
        ("types", "public"),
        ("types", "private"),
        ("q", "café ☕"),
    ]
