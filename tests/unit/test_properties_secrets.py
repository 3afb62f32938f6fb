"""No secret in any error, over generated secrets (hypothesis, 1,000 cases each).

Requests go to a real HTTP server on loopback, so the whole path runs: the authenticator, requests'
preparation, urllib3 and http.client writing the headers. A mocked transport would skip the part
where a header that cannot be encoded used to fail with the secret in the exception.
"""

from __future__ import annotations

import base64
import json
import pickle
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery import Celery
from celery.backends.base import Backend
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_integrations.connectors.auth import check_secret_values, secret_value_problem
from spark_integrations.connectors.sandbox import SandboxConnector
from spark_integrations.errors import IntegrationError, UsageError

# Any text at all: control characters, line breaks, Latin-1, emoji, lone surrogates.
ANY_TEXT = st.text(st.characters(exclude_categories=()), min_size=1, max_size=24)
# Mostly-plausible credentials with a nasty character now and then.
NASTY = st.sampled_from(["\r\n", "\n", "\x00", "\x7f", " ", "é", "€", "😀", "\ud800", ":", "\t"])
PLAUSIBLE = st.lists(
    st.one_of(st.text("abcdefXYZ0123456789-_.~+/=", min_size=1, max_size=6), NASTY), max_size=6
).map("".join)
SECRET = st.one_of(ANY_TEXT, PLAUSIBLE).map(lambda s: "Zq9" + s + "9qZ")


_APP = Celery("secrets-test", set_as_current=False)


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        _Recorder.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"id": "m1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _traces(exc: BaseException) -> str:
    """Everything a log line, a task result or Flower could show of ``exc``."""
    backend = Backend(app=_APP, serializer="json")
    shown = [
        str(exc),
        repr(exc),
        repr(exc.args),
        "".join(traceback.format_exception(exc)),
        repr(pickle.loads(pickle.dumps(exc)).args),
        json.dumps(backend.prepare_exception(exc), default=repr),
    ]
    return "\n".join(shown)


def _leaks(secret: str, text: str) -> bool:
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    return any(form in text for form in forms)


def _send(url: str, secrets: dict[str, str]) -> Any:
    client = SandboxConnector({"base_url": url}, secrets)
    return client.run_action("create_message", {"text": "hi"}, idempotency_key="k-1")


@settings(max_examples=1000, deadline=None)
@given(key=st.sampled_from(["api_key", "username", "password", "client_secret"]), value=SECRET)
def test_a_secret_is_stored_only_if_it_can_be_sent(key: str, value: str) -> None:
    """A refusal names the secret, never its value, in one sentence."""
    problem = secret_value_problem(key, value)
    if problem is None:
        check_secret_values({key: value})
        return
    assert f"secret {key} " in problem and "\n" not in problem
    assert not _leaks(value, problem)
    with pytest.raises(UsageError) as info:
        check_secret_values({"webhook_secret": "w", key: value})
    assert str(info.value) == problem


@settings(max_examples=1000, deadline=None)
@given(
    kind=st.sampled_from(["api_key", "basic_user", "basic_password"]),
    value=SECRET,
)
def test_no_secret_in_any_error_on_the_way_out(server_url: str, kind: str, value: str) -> None:
    """Whatever a stored credential holds (stored before the check, or a provider's token), a
    request either carries it as its scheme says or fails with an error that quotes it nowhere."""
    if kind == "api_key":
        secrets = {"api_key": value}
        stored_ok = secret_value_problem("api_key", value) is None
    elif kind == "basic_user":
        secrets = {"username": value, "password": "pw"}
        stored_ok = secret_value_problem("username", value) is None
    else:
        secrets = {"username": "user", "password": value}
        stored_ok = secret_value_problem("password", value) is None
    _Recorder.seen.clear()
    try:
        answer = _send(server_url, secrets)
    except IntegrationError as exc:
        assert not stored_ok, f"a storable credential failed: {exc}"
        assert not _leaks(value, _traces(exc))
        assert "\n" not in str(exc)
        assert _Recorder.seen == []  # refused before anything was sent
        return
    assert stored_ok, "a credential the store refuses was sent anyway"
    assert answer == {"id": "m1"}
    [header] = _Recorder.seen
    if kind == "api_key":
        assert header == f"Bearer {value}"
    else:
        assert header is not None
        sent = base64.b64decode(header.removeprefix("Basic ")).decode("latin-1")
        assert sent == f"{secrets['username']}:{secrets['password']}"


@settings(max_examples=1000, deadline=None)
@given(value=SECRET, where=st.sampled_from(["header", "json"]))
def test_a_value_the_encoder_refuses_fails_as_fatal_without_quoting_it(
    server_url: str, value: str, where: str
) -> None:
    """A header or body a connector builds itself (a signature, a token in a custom header)
    that cannot be encoded fails at once, never sent, and the error quotes nothing of it."""
    from spark_integrations.connectors import http
    from spark_integrations.errors import FatalError

    _Recorder.seen.clear()
    extra: dict[str, Any] = (
        {"headers": {"X-Signature": value}} if where == "header" else {"json": {"v": value}}
    )
    try:
        response = http.send("POST", server_url + "/v1/x", connector="probe", **extra)
    except FatalError as exc:
        assert str(exc).startswith("probe: the request cannot be sent as built (")
        assert not _leaks(value, _traces(exc))
        assert _Recorder.seen == []
        return
    assert response.status_code == 200
