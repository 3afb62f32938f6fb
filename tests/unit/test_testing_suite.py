"""The contract suite fails a broken connector (each defect of ``contract_defects`` run through
the suite in a pytest subprocess fails the test that should catch it, while the unbroken
connector passes), and its pieces: recordings, pointers, request comparison, replication order."""

from __future__ import annotations

import ast
import base64
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from spark_integrations.testing import recordings
from spark_integrations.testing.compare import request_problems
from spark_integrations.testing.recordings import Recordings, resolve_pointer
from spark_integrations.testing.replay import Sent
from spark_integrations.testing.streams import order_key
from tests.unit import contract_defects, contract_defects_strict

BROKEN = contract_defects.BROKEN + contract_defects_strict.STRICT
# What each broken connector must fail (test name prefixes); TestGood fails nothing.
MUST_FAIL = {**contract_defects.MUST_FAIL, **contract_defects_strict.MUST_FAIL}

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_RECORDINGS = ROOT / "tests" / "connectors" / "recordings" / "sandbox.yaml"
STRIPE_FIXTURES = ROOT.parent / "shared" / "provider-specs" / "stripe_fixtures3.json"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Run the suite on every broken connector once: {class: {test id: outcome}}."""
    where = tmp_path_factory.mktemp("broken")
    (where / "pytest.ini").write_text("[pytest]\n")
    (where / "test_broken.py").write_text(BROKEN.format(recordings=SANDBOX_RECORDINGS))
    report = where / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}"],
        capture_output=True,
        text=True,
        cwd=where,
        timeout=300,
    )
    assert report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    found: dict[str, dict[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
        found.setdefault(cls, {})[case.get("name", "")] = outcome
    return found


def _walks_of_one_page() -> set[str]:
    """The cycle tests of the sandbox's streams whose recordings never reach a second page
    (the suite fails them: their pagination goes unchecked until a page is recorded)."""
    longest: dict[str, int] = {}
    for entry in recordings(SANDBOX_RECORDINGS).entries("streams"):
        name = entry["stream"]
        longest[name] = max(longest.get(name, 0), len(entry.get("pages") or []))
    return {f"test_stream_stops_on_cycle[{name}]" for name, pages in longest.items() if pages < 2}


def test_the_unbroken_connector_passes_every_check(outcomes: dict[str, dict[str, str]]) -> None:
    good = outcomes["TestGood"]
    assert len(good) > 30
    assert {n for n, o in good.items() if o != "passed"} == _walks_of_one_page()


@pytest.mark.parametrize("broken", sorted(MUST_FAIL))
def test_a_broken_connector_fails_the_suite(
    outcomes: dict[str, dict[str, str]], broken: str
) -> None:
    results = outcomes[broken]
    failed = {name for name, outcome in results.items() if outcome in ("failed", "error")}
    for prefix in MUST_FAIL[broken]:
        assert any(name.startswith(prefix) for name in failed), (broken, prefix, sorted(failed))


def test_a_learned_rate_the_recording_expects_passes(outcomes: dict[str, dict[str, str]]) -> None:
    assert outcomes["TestRateLearned"]["test_rate_limit_headers[limit headers]"] == "passed"
    assert outcomes["TestRefusalPauses"]["test_rate_limit_headers[refused]"] == "passed"


def test_a_defect_fails_only_the_checks_it_concerns(outcomes: dict[str, dict[str, str]]) -> None:
    # A wrong path on one action is not reported against the streams or the other actions.
    failed = {n for n, o in outcomes["TestWrongPath"].items() if o == "failed"}
    assert "test_action_request[get_item]" in failed
    failed -= _walks_of_one_page()
    assert not {n for n in failed if n.startswith(("test_stream", "test_action_request[create"))}


# -- recordings --------------------------------------------------------------------------------


def test_recordings_resolve_file_references(tmp_path: Path) -> None:
    (tmp_path / "bodies").mkdir()
    (tmp_path / "bodies" / "one.json").write_text('{"resources": {"customer": {"id": "cus_1"}}}')
    (tmp_path / "r.yaml").write_text(
        "actions:\n"
        "  - action: a\n"
        "    response: {status: 200, body_from: {file: bodies/one.json, "
        "pointer: /resources/customer, merge: {name: x}}}\n"
        "  - action: b\n"
        "    response: {status: 200, body: {data: [{$from: {file: bodies/one.json, "
        "pointer: /resources/customer}}], has_more: false}}\n"
        "  - action: c\n"
        "    response: {status: 200, body_file: bodies/one.json}\n"
    )
    recs = recordings(tmp_path / "r.yaml")
    a, b, c = (e["response"] for e in recs.entries("actions"))
    assert recs.body(a) == {"id": "cus_1", "name": "x"}
    assert recs.body(b) == {"data": [{"id": "cus_1"}], "has_more": False}
    assert recs.body(c) == {"resources": {"customer": {"id": "cus_1"}}}


def test_a_missing_referenced_file_skips_outside_ci_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs = Recordings({}, base=tmp_path, source="r.yaml")
    response = {"body_from": {"file": "../absent/fixtures.json", "pointer": "/x"}}
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="absent"):
        recs.body(response)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        recs.body(response)


def test_stripe_fixtures_can_serve_as_bodies() -> None:
    if not STRIPE_FIXTURES.is_file():
        if IN_CI:
            pytest.fail(f"{STRIPE_FIXTURES} is required under CI=true")
        pytest.skip(f"{STRIPE_FIXTURES} is absent")
    recs = Recordings({}, base=STRIPE_FIXTURES.parent, source="<test>")
    reference = {"file": STRIPE_FIXTURES.name, "pointer": "/resources/customer"}
    body = recs.body({"body_from": reference})
    assert body["object"] == "customer"


def test_json_pointers() -> None:
    document = {"a/b": {"c~d": [1, {"e": 2}]}}
    assert resolve_pointer(document, "/a~1b/c~0d/1/e") == 2
    with pytest.raises(KeyError, match="finds nothing"):
        resolve_pointer(document, "/a~1b/x")


def test_bad_recordings_are_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown key 'action'"):
        recordings({"action": []})
    with pytest.raises(ValueError, match="errors must be a list of mappings"):
        recordings({"errors": {"a": 1}})
    with pytest.raises(FileNotFoundError, match="no recordings file"):
        recordings(tmp_path / "absent.yaml")


def test_the_runtime_never_imports_the_suite() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in ("testing", "tests", ".venv", ".typecheck", "build", "bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.startswith("spark_integrations.testing") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_a_json_recordings_file_loads(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('{"secrets": {"api_key": "k-123456"}, "actions": []}')
    recs = recordings(tmp_path / "r.json")
    assert recs.secrets == {"api_key": "k-123456"}
    # The value, and the value as HTTP Basic sends it as a username (Stripe's key).
    assert recs.secret_values() == {"k-123456", base64.b64encode(b"k-123456:").decode()}


def _sent(body: bytes, content_type: str, url: str = "https://x.test/v1/a?b=1&b=2") -> Sent:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    return Sent(
        method="POST",
        url=url,
        path=parts.path,
        query=parse_qs(parts.query),
        headers={"Content-Type": content_type},
        body=body,
    )


def test_form_fields_compare_decoded_and_queries_exactly() -> None:
    sent = _sent(
        b"metadata%5Border%5D=6735&items%5B0%5D%5Bprice%5D=p_1&amount=2000",
        "application/x-www-form-urlencoded",
    )
    expected = {
        "method": "POST",
        "path": "/a",
        "query": {"b": ["1", "2"]},
        "form": {"amount": 2000, "items[0][price]": "p_1", "metadata[order]": "6735"},
    }
    assert request_problems(sent, expected, "https://x.test/v1", "it") == []
    wrong = {**expected, "form": {"amount": "2000"}, "query": {"b": "1"}}
    problems = request_problems(sent, wrong, "https://x.test/v1", "it")
    assert len(problems) == 2
    assert "query is" in problems[0] and "form fields are" in problems[1]
    as_json = request_problems(sent, {"json": {"amount": 2000}}, "https://x.test/v1", "it")
    assert as_json == ["it: the body is not JSON, expected {'amount': 2000}"]


def test_header_expectations() -> None:
    sent = _sent(b"", "text/plain")
    base = "https://x.test"
    for fine in (
        {"content-type": "text/plain"},
        {"Content-Type": {"prefix": "text/"}},
        {"Content-Type": {"regex": "text/.*"}},
        {"Authorization": {"absent": True}},
    ):
        assert request_problems(sent, {"headers": fine}, base, "h") == [], fine
    assert request_problems(sent, {"headers": {"Content-Type": {"absent": True}}}, base, "h") == [
        "h: header Content-Type should be absent"
    ]
    assert request_problems(sent, {"headers": {"X-Key": "k"}}, base, "h") == [
        "h: header X-Key is missing (expected 'k')"
    ]


def test_replication_values_compare_as_their_kind() -> None:
    # Slack's ts and Discord's snowflakes as numbers, ISO times as instants.
    assert order_key("1512085950.000216") < order_key("1512104434.000490")
    assert order_key("999999999999999999") < order_key("1000000000000000000")
    assert order_key("2026-01-01T00:00:00Z") == order_key("2026-01-01T01:00:00+01:00")
    assert order_key(3) < order_key(10)
