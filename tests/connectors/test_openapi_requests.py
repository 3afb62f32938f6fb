"""Every request the Slack and Discord connectors build, for each recorded action and stream
page, is one the providers' published descriptions accept.

The descriptions are read from ``../shared/provider-specs/`` (never copied here): Slack's Web
API (Swagger 2.0, slackapi/slack-api-specs) and Discord's API v10 (OpenAPI 3.1,
discord/discord-api-spec). Without that folder the tests skip, saying why; under ``CI=true``
they fail. The requests are the ones the connectors send to the recorded answers of the contract
suite (``tests/connectors/recordings``), captured with its replay.

- Slack: the method exists in ``paths``; every argument sent (query, JSON body) is one of the
  method's parameters and every required one is present; the token, which the description lists
  as a required parameter, is accepted as ``Authorization: Bearer`` instead (the description's
  README quirk); a JSON body goes only to a method that consumes ``application/json``.
- Discord: the method and path template exist; path segments and query values meet their
  schemas; the JSON body's fields are within the request schema's ``properties`` (it does not
  forbid others itself), its required ones are present and the body validates against it; a
  bot route is sent ``Authorization: Bot ...``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.providers.discord import Discord, DiscordWebhook
from spark_integrations.connectors.providers.slack import Slack
from spark_integrations.testing import recordings
from spark_integrations.testing.recordings import Recordings
from spark_integrations.testing.replay import Replay, Sent, call_target, make_client

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "provider-specs"
HERE = Path(__file__).resolve().parent / "recordings"


def _spec(name: str) -> dict[str, Any]:
    path = SPECS / name
    if not path.is_file():
        reason = f"{path} is absent (the providers' published descriptions)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; it is required under CI=true.")
        pytest.skip(reason + "; skipped outside CI.")
    return _read(str(path))


@cache
def _read(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _sent_requests(connector: type[Connector], recs: Recordings) -> Iterator[tuple[str, Sent]]:
    """Each recorded action's request, and each recorded stream page's, as the connector sent it."""
    for entry, label in zip(recs.entries("actions"), recs.ids("actions"), strict=True):
        client = make_client(connector, recs, config=entry.get("config"))
        with Replay(recs) as replay:
            replay.add(*(entry.get("responses") or []), entry.get("response") or {})
            call_target(
                client,
                {
                    "action": entry["action"],
                    "params": entry.get("params") or {},
                    "idempotency_key": entry.get("idempotency_key"),
                },
            )
        yield f"action {label}", replay.sent[-1]
    for entry, label in zip(recs.entries("streams"), recs.ids("streams"), strict=True):
        client = make_client(connector, recs, config=entry.get("config"))
        position = entry.get("position")
        with Replay(recs) as replay:
            for number, page in enumerate(entry.get("pages") or [], 1):
                replay.add(*(page.get("responses") or []), page.get("response") or {})
                target = {
                    "stream": entry["stream"],
                    "params": entry.get("params") or {},
                    "since": entry.get("since"),
                    "position": position,
                }
                answer = call_target(client, target)
                yield f"stream {label}, page {number}", replay.sent[-1]
                if answer.value.finished:
                    break
                position = answer.value.position


def _cases(connector: type[Connector], file: str) -> list[Any]:
    recs = recordings(HERE / file)
    return [pytest.param(sent, id=label) for label, sent in _sent_requests(connector, recs)]


# -- Slack ------------------------------------------------------------------------------------


def _slack_problems(spec: Mapping[str, Any], sent: Sent) -> list[str]:
    base = spec.get("basePath", "")
    method_path = sent.path[len(base) :] if sent.path.startswith(base) else sent.path
    operations = spec["paths"].get(method_path)
    if operations is None:
        return [f"{method_path} is not a method of Slack's Web API description"]
    # "Slack's Web API accepts GET or POST for most methods whatever the document lists."
    operation = operations.get(sent.method.lower()) or next(iter(operations.values()))
    params = {p["name"]: p for p in operation.get("parameters", [])}
    problems = []
    sent_args: dict[str, Any] = {k: v[0] for k, v in sent.query.items()}
    if sent.body:
        kind = sent.header("Content-Type") or ""
        if kind.startswith("application/json"):
            if "application/json" not in operation.get("consumes", []):
                problems.append(f"{method_path} does not consume application/json")
            sent_args.update(sent.json())
        else:
            sent_args.update({k: v[0] for k, v in sent.form().items()})
    for name in sent_args:
        if name not in params:
            problems.append(f"{method_path} has no parameter {name!r}")
    for name, param in params.items():
        if name == "token":
            continue
        if param.get("required") and name not in sent_args:
            problems.append(f"{method_path}: the required parameter {name!r} is missing")
    if "token" in params and "token" not in sent_args:
        auth = sent.header("Authorization") or ""
        if not re.fullmatch(r"Bearer \S+", auth):
            problems.append(f"{method_path}: no token, neither as a parameter nor as a bearer")
    return problems


@pytest.mark.parametrize("sent", _cases(Slack, "slack.yaml"))
def test_slack_request_matches_the_description(sent: Sent) -> None:
    spec = _spec("slack_web_openapi_v2_without_examples.json")
    problems = _slack_problems(spec, sent)
    assert not problems, "; ".join(problems)


def test_slack_check_refuses_what_the_description_does_not_hold() -> None:
    """The check itself finds an unknown method, an unknown argument and a missing one."""
    spec = _spec("slack_web_openapi_v2_without_examples.json")

    def sent(path: str, body: dict[str, Any], auth: str | None = "Bearer xoxb-1") -> Sent:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        raw = json.dumps(body).encode()
        return Sent("POST", "https://slack.com" + path, path, {}, headers, raw)

    assert (
        _slack_problems(spec, sent("/api/chat.postMessage", {"channel": "C1", "text": "x"})) == []
    )
    assert _slack_problems(spec, sent("/api/chat.sendMessage", {"channel": "C1"}))
    assert _slack_problems(spec, sent("/api/chat.postMessage", {"channel": "C1", "colour": "x"}))
    assert _slack_problems(spec, sent("/api/chat.update", {"channel": "C1", "text": "x"}))
    assert _slack_problems(spec, sent("/api/chat.postMessage", {"channel": "C1"}, auth=None))


# -- Discord ----------------------------------------------------------------------------------


def _discord_operation(
    spec: Mapping[str, Any], sent: Sent
) -> tuple[str, Mapping[str, Any], dict[str, str]] | None:
    base = "/api/v10"
    path = sent.path[len(base) :] if sent.path.startswith(base) else sent.path
    if path.startswith("/api/webhooks/"):  # a webhook URL as Discord hands it out (unversioned)
        path = path[len("/api") :]
    for template, item in spec["paths"].items():
        names = re.findall(r"\{([^{}]+)\}", template)
        pattern = re.sub(r"\\\{[^{}]+\\\}", "([^/]+)", re.escape(template))
        found = re.fullmatch(pattern, path)
        if found and sent.method.lower() in item:
            return template, item, dict(zip(names, found.groups(), strict=True))
    return None


def _validator(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> Draft202012Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve in ``spec``."""
    return Draft202012Validator({**schema, "components": spec["components"]})


def _schema_problems(spec: Mapping[str, Any], schema: Mapping[str, Any], value: Any) -> list[str]:
    validator = _validator(spec, schema)
    return [error.message for error in validator.iter_errors(value)]


def _properties(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Every property a request schema names, and the required ones (through $ref, allOf,
    anyOf and oneOf: any branch's property is allowed)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _properties(spec, spec["components"]["schemas"][name])
    names = set(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(key, []):
            more, needed = _properties(spec, branch)
            names |= more
            if key == "allOf":
                required |= needed
    return names, required


def _discord_problems(spec: Mapping[str, Any], sent: Sent) -> list[str]:
    found = _discord_operation(spec, sent)
    if found is None:
        return [f"{sent.method} {sent.path} is no operation of Discord's description"]
    template, item, values = found
    operation = item[sent.method.lower()]
    where = f"{sent.method} {template}"
    problems = []
    params = {p["name"]: p for p in [*item.get("parameters", []), *operation.get("parameters", [])]}
    for name, value in values.items():
        problems += [
            f"{where}: {name}: {m}" for m in _schema_problems(spec, params[name]["schema"], value)
        ]
    for name, value in ((k, v[0]) for k, v in sent.query.items()):
        param = params.get(name)
        if param is None or param["in"] != "query":
            problems.append(f"{where} has no query parameter {name!r}")
            continue
        schema = param["schema"]
        typed: Any = value
        if schema.get("type") == "integer" and value.lstrip("-").isdigit():
            typed = int(value)
        elif schema.get("type") == "boolean" and value in ("true", "false"):
            typed = value == "true"
        problems += [f"{where}: {name}: {m}" for m in _schema_problems(spec, schema, typed)]
    body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if sent.body:
        if not body_schema:
            problems.append(f"{where} takes no JSON body")
        else:
            body = sent.json()
            names, required = _properties(spec, body_schema["schema"])
            problems += [
                f"{where}: the body field {k!r} is not in the schema"
                for k in body
                if k not in names
            ]
            problems += [
                f"{where}: the required body field {k!r} is missing"
                for k in required
                if k not in body
            ]
            problems += [
                f"{where}: body: {m}" for m in _schema_problems(spec, body_schema["schema"], body)
            ]
    elif operation.get("requestBody", {}).get("required"):
        problems.append(f"{where} requires a body")
    security = operation.get("security", spec.get("security", []))
    auth = sent.header("Authorization")
    needs_bot = security and all("BotToken" in s for s in security)
    if needs_bot and not (auth and re.fullmatch(r"Bot \S+", auth)):
        problems.append(f"{where} needs Authorization: Bot TOKEN")
    return problems


@pytest.mark.parametrize(
    "sent", _cases(Discord, "discord.yaml") + _cases(DiscordWebhook, "discord_webhook.yaml")
)
def test_discord_request_matches_the_description(sent: Sent) -> None:
    spec = _spec("discord_openapi.json")
    problems = _discord_problems(spec, sent)
    assert not problems, "; ".join(problems)


def test_discord_check_refuses_what_the_description_does_not_hold() -> None:
    """The check itself finds an unknown route, an unknown body field, a nonce too long, a
    limit out of range and a bot route without its token."""
    spec = _spec("discord_openapi.json")
    channel = "/api/v10/channels/290926798999357250/messages"

    def sent(
        method: str, path: str, body: Any = None, query: str = "", auth: str | None = "Bot t"
    ) -> Sent:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if auth:
            headers["Authorization"] = auth
        raw = json.dumps(body).encode() if body is not None else b""
        parsed = {k: [v] for k, v in (p.split("=") for p in query.split("&") if p)}
        return Sent(method, "https://discord.com" + path, path, parsed, headers, raw)

    assert _discord_problems(spec, sent("POST", channel, {"content": "hi", "nonce": "n1"})) == []
    assert _discord_problems(spec, sent("POST", "/api/v10/channels/1/mesages", {"content": "x"}))
    assert _discord_problems(spec, sent("POST", channel, {"content": "hi", "colour": 3}))
    assert _discord_problems(spec, sent("POST", channel, {"content": "hi", "nonce": "n" * 26}))
    assert _discord_problems(spec, sent("GET", channel, query="after=0&limit=500"))
    assert _discord_problems(spec, sent("GET", "/api/v10/channels/abc/messages"))
    assert _discord_problems(spec, sent("GET", channel, auth=None))
