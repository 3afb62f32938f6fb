"""A stream parameter the stream sends itself (its since_param, a fixed query field, its
paginator's cursor or size) would be overwritten on every page: the manifest is refused, one
sentence per parameter, naming what sends it."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_integrations.connectors.manifest import check_manifest, load_manifest
from tests.unit.test_manifest import problems_of

STREAM = """\
name: lister
base_url: https://api.lister.test
streams:
  - name: items
    path: /teams/{{team}}/items
    params:
      team: {{required: true}}
      {param}: {{required: true}}
    query: {{state: all}}
    primary_key: id
    replication_key: updated_at
    since_param: since
    pagination: {{style: cursor, cursor_param: page_token}}
"""


@pytest.mark.parametrize(
    ("param", "what"),
    [
        ("since", "its since_param"),
        ("state", "a fixed query parameter"),
        ("page_token", "its paginator's cursor_param"),
        ("limit", "its paginator's limit_param"),
    ],
)
def test_a_parameter_the_stream_sends_itself_is_refused(
    tmp_path: Path, param: str, what: str
) -> None:
    problems = problems_of(tmp_path, STREAM.format(param=param))
    assert len(problems) == 1, problems
    assert f"streams.items.params.{param}:" in problems[0]
    assert what in problems[0]


def test_a_parameter_of_its_own_name_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(STREAM.format(param="label"), encoding="utf-8")
    assert check_manifest(path) == []
    stream = load_manifest(path).get_stream("items")
    assert [p.name for p in stream.parameters] == ["team", "label"]
