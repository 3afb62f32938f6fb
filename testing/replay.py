"""Serving recorded answers to a connector with ``responses``, and reading what it sent.

:class:`Replay` intercepts every request of every ``requests`` session, answers each with the
next recorded response, in order, and keeps the requests; a request beyond the recorded
answers fails the test with what it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Answer, Connector
from spark_integrations.connectors.streams import Page, Stream
from spark_integrations.testing.recordings import Recordings

__all__ = ["FixedToken", "Replay", "Sent", "call_target", "make_client", "read_page"]

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: The scope the suite's clients name their budgets after.
SCOPE = "contract"


class FixedToken:
    """A token source handing out one access token (an OAuth connection's, for the suite)."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.invalidated = 0

    def __call__(self) -> str:
        return self._token

    def invalidate(self) -> None:
        self.invalidated += 1

    def __repr__(self) -> str:
        return "FixedToken(***)"


@dataclass(frozen=True)
class Sent:
    """One request the connector sent, decoded."""

    method: str
    url: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (``ValueError`` when it is not)."""
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, list[str]]:
        """The body decoded as ``application/x-www-form-urlencoded`` fields."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


def _encode_body(recs: Recordings, response: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
    body = recs.body(response)
    has_type = any(k.lower() == "content-type" for k in headers)
    if body is None:
        return b"", headers
    if isinstance(body, str):  # a text body is sent as it is (write JSON as a mapping or list)
        return body.encode(), headers
    if not has_type:
        headers["Content-Type"] = "application/json"
    return json.dumps(body).encode(), headers


class Replay:
    """Answer the connector's requests with recorded responses, in order, and keep them."""

    def __init__(self, recs: Recordings) -> None:
        self.recs = recs
        self.queue: list[Mapping[str, Any]] = []
        self.sent: list[Sent] = []
        self._mock = responses.RequestsMock(assert_all_requests_are_fired=False)

    def add(self, *answers: Mapping[str, Any]) -> None:
        """Queue recorded responses (``{status, headers, body | body_file | body_from}``)."""
        self.queue.extend(answers)

    def __enter__(self) -> Replay:
        self._mock.__enter__()
        for method in _METHODS:
            self._mock.add_callback(method, re.compile(r".*"), callback=self._answer)
        return self

    def __exit__(self, *exc: object) -> None:
        self._mock.__exit__(*exc)

    def _answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = str(request.url)
        parts = urlsplit(url)
        body = request.body
        raw = body.encode() if isinstance(body, str) else (body or b"")
        self.sent.append(
            Sent(
                method=str(request.method),
                url=url,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers=dict(request.headers),
                body=raw if isinstance(raw, bytes) else b"",
            )
        )
        if not self.queue:
            raise AssertionError(
                f"the connector sent a request beyond the recorded answers: "
                f"{request.method} {parts.path} (request {len(self.sent)})."
            )
        answer = self.queue.pop(0)
        body_bytes, headers = _encode_body(self.recs, answer)
        return int(answer.get("status", 200)), headers, body_bytes


def make_client(
    connector: type[Connector],
    recs: Recordings,
    *,
    secrets: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    token: str | None = None,
    default_token: bool = True,
) -> Connector:
    """A client of one connection built from the recordings (or the given secrets/config)."""
    chosen = recs.secrets if secrets is None else {str(k): str(v) for k, v in secrets.items()}
    cfg = {**recs.config, **(config or {})}
    if token is None and default_token:
        token = recs.token
    return connector(
        cfg,
        chosen,
        session=requests.Session(),
        token_source=FixedToken(token) if token else None,
        scope=SCOPE,
    )


def read_page(
    client: Connector,
    stream: Stream,
    *,
    since: Any = None,
    position: Any = None,
    params: Mapping[str, Any] | None = None,
) -> Answer[Page]:
    """One page of a stream, its parameters checked as ``syncs add --param`` checks them."""
    checked = stream.validate_params(dict(params or {}))
    return client.perform_page(stream, since=since, position=position, params=checked)


def call_target(client: Connector, target: Mapping[str, Any]) -> Answer[Any]:
    """Send what an entry's ``target`` names: ``{action, params, idempotency_key}`` or
    ``{stream, params, since, position}``."""
    if "action" in target:
        action: Action = client.get_action(target["action"])
        return client.perform_action(
            action,
            action.validate(dict(target.get("params") or {})),
            idempotency_key=target.get("idempotency_key"),
        )
    if "stream" in target:
        stream = client.get_stream(target["stream"])
        return read_page(
            client,
            stream,
            since=target.get("since"),
            position=target.get("position"),
            params=target.get("params"),
        )
    raise ValueError(f"a target names an action or a stream, not {dict(target)!r}.")
