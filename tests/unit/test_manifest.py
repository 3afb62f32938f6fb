"""connectors.manifest: loading YAML and TOML manifests into connector classes, and every
problem of a bad one reported as one sentence ``FILE: key.path: what is wrong``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.limits import Tier
from spark_integrations.connectors.manifest import (
    check_manifest,
    declared,
    load_manifest,
    manifest_schema,
)
from spark_integrations.connectors.pagination import (
    AfterLastPaginator,
    CursorPaginator,
    LinkHeaderPaginator,
)
from spark_integrations.connectors.streams import Param
from spark_integrations.errors import ConfigurationError, ManifestError, UsageError

HERE = Path(__file__).parent / "manifests"
CHAT = HERE / "chat.yaml"
NOTES = HERE / "notes.toml"


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, name: str = "m.yaml") -> list[str]:
    path = write(tmp_path, text, name)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert list(info.value.problems) == check_manifest(path)
    assert str(info.value) == "\n".join(info.value.problems)
    return list(info.value.problems)


MINIMAL = """\
name: mini
base_url: https://api.mini.test
"""


# --- a full manifest -----------------------------------------------------------------------------


def test_the_yaml_example_builds_a_connector_class() -> None:
    chat = load_manifest(CHAT)
    assert issubclass(chat, Connector) and chat.__name__ == "Chat"
    assert chat.name == "chat" and chat.title == "Chat"
    assert chat.docs_path == "docs/connectors/chat.md"
    assert chat.default_base_url == "https://{workspace}.chat.test/api"
    # A placeholder of the base URL is a config key, and one that decides where requests go.
    assert chat.config_keys == ("team", "workspace")
    assert chat.endpoint_config_keys == ("workspace",)
    assert chat.auth_kinds == ("bearer", "api_key", "oauth2")
    assert chat.secret_keys == ("bot_token", "api_key")
    assert chat.direct_credentials == (("bot_token",), ("api_key",))
    assert chat.oauth is True
    assert chat.authorize_url == "https://chat.test/oauth/authorize"
    assert chat.token_url == "/oauth.access"
    assert chat.oauth_scopes == ("chat:write", "channels:read")
    assert chat.token_auth_method == "client_secret_post"
    assert chat.rate_limit == 5.0 and chat.rate_limit_window == 60.0
    assert chat.rate_limit_headers == {
        "remaining": "X-Left",
        "reset_after": "X-Reset-After",
        "bucket": "X-Bucket",
    }
    assert chat.tiers["posts"] == Tier(1.0, "route")
    assert chat.idempotency_header == "Idempotency-Key"
    assert chat.webhook_scheme == "slack-v0"
    assert chat.error_message_path == ("error", "detail")
    assert [r.then for r in chat.error_rules] == ["rate_limited", "reauth", "rate_limited", "fatal"]
    post = chat.get_action("post_message")
    assert post == Action(
        "post_message",
        "POST",
        "/chat.postMessage",
        params={"channel": str, "text": str},
        optional={"thread_ts": str, "blocks": list},
        idempotent=True,
        budget="posts",
        result="message",
    )
    assert chat.get_action("update_message").fixed == {"as_user": True}
    messages = chat.get_stream("messages")
    assert messages.parameters == (Param("channel", required=True, type="string"),)
    assert messages.order == "newest_first" and messages.records_path == "messages"
    assert messages.paginator is CursorPaginator
    assert messages.paginator_options == {
        "cursor_param": "cursor",
        "next_field": "response_metadata.next_cursor",
        "limit_param": "limit",
    }
    assert messages.params == {"inclusive": "true"} and messages.page_size == 200
    assert messages.since_param == "oldest" and messages.budget == "tier2"
    assert chat.get_stream("users").paginator is LinkHeaderPaginator
    # A config with the placeholder's key is valid; the base URL is filled from it.
    chat.validate_config({"workspace": "acme"})
    assert chat({"workspace": "acme"}, {"bot_token": "t"}).base_url == "https://acme.chat.test/api"


def test_the_toml_example_builds_the_same_kind_of_class() -> None:
    notes = load_manifest(NOTES)
    assert notes.name == "notes" and notes.body_encoding == "form"
    assert notes.auth_kinds == ("basic",)
    assert notes.auth_settings == {"basic": {"username": "secret_key", "password": ""}}
    assert notes.direct_credentials == (("secret_key",),)
    assert notes.fleet_rate_limit == 100.0
    stream = notes.get_stream("notes")
    assert stream.paginator is AfterLastPaginator and stream.since_param == "created[gte]"
    assert notes.get_action("get_note").path == "/notes/{id}"


def test_yaml_and_toml_hold_the_same_data(tmp_path: Path) -> None:
    yaml_file = write(tmp_path, MINIMAL + "secret_keys: [token]\nauth: {bearer: {secret: token}}\n")
    toml_file = write(
        tmp_path,
        'name = "mini"\nbase_url = "https://api.mini.test"\nsecret_keys = ["token"]\n'
        '[auth]\nbearer = { secret = "token" }\n',
        "m.toml",
    )
    a, b = load_manifest(yaml_file), load_manifest(toml_file)
    for attr in ("name", "secret_keys", "auth_kinds", "auth_settings", "direct_credentials"):
        assert getattr(a, attr) == getattr(b, attr)


def test_a_manifest_is_loaded_once_per_file() -> None:
    assert load_manifest(CHAT) is load_manifest(str(CHAT))


def test_the_published_schema_is_valid_draft_2020_12() -> None:
    schema = manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    shipped = Path(__file__).parents[2] / "connectors" / "manifest.schema.json"
    assert json.loads(shipped.read_text()) == schema


def test_declared_finds_the_manifest_beside_the_module_or_in_manifests(tmp_path: Path) -> None:
    package = tmp_path / "providers"
    package.mkdir()
    (tmp_path / "manifests").mkdir()
    write(tmp_path / "manifests", MINIMAL, "mini.yaml")
    module = package / "mini.py"
    module.write_text("")
    cls = declared(str(module), "mini.yaml")
    assert cls.name == "mini" and cls.__module__ == __name__
    write(package, MINIMAL.replace("mini", "beside"), "beside.yaml")
    assert declared(str(module), "beside.yaml").name == "beside"
    with pytest.raises(ManifestError, match=r"absent\.yaml: no such manifest"):
        declared(str(module), "absent.yaml")


# --- hooks ---------------------------------------------------------------------------------------


class Hooks(Connector):
    """A hook class: the declared connector inherits its methods."""

    def parse_action(self, action: Action, response: object) -> object:
        return "hooked"


def test_the_hook_class_is_the_base_of_the_declared_connector(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + f"class: {__name__}:Hooks\n")
    cls = load_manifest(path)
    assert issubclass(cls, Hooks) and cls.parse_action is Hooks.parse_action
    assert cls.name == "mini"


def test_a_hook_class_that_is_no_connector_is_reported(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + f"class: {__name__}:write\n")
    assert problems == [
        f"{tmp_path / 'm.yaml'}: class: {__name__}:write is not a Connector subclass."
    ]
    problems = problems_of(tmp_path, MINIMAL + "class: no_such_module_here:X\n")
    assert problems == [
        f"{tmp_path / 'm.yaml'}: class: cannot import no_such_module_here (ModuleNotFoundError)."
    ]


def test_jwt_app_needs_a_signer_hook(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + "auth: {jwt_app: {}}\n")
    assert len(problems) == 1 and "auth.jwt_app: needs a class: whose signer()" in problems[0]


# --- problems ------------------------------------------------------------------------------------


def test_every_problem_is_listed_with_its_file_and_key(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        name: Bad-Name
        base_url: ftp://nowhere
        colour: blue
        limits: {rate_limit: 0, tiers: {t1: {rate: 1, per: galaxy}}}
        body: xml
        actions:
          - name: send
            method: SEND
            path: /send
            params: {to: text}
          - {name: nothing}
        streams:
          - name: things
            path: /things
            primary_key: id
            pagination: {style: zigzag}
        """,
    )
    where = str(tmp_path / "m.yaml")
    assert all(p.startswith(where + ": ") for p in problems)
    keys = [p[len(where) + 2 :].split(":", 1)[0] for p in problems]
    assert keys == [
        "actions.nothing.method",
        "actions.nothing.path",
        "actions.send.method",
        "actions.send.params.to",
        "base_url",
        "body",
        "colour",
        "limits.rate_limit",
        "limits.tiers.t1.per",
        "name",
        "streams.things.pagination.style",
    ]
    text = "\n".join(problems)
    assert "colour: is not a known key" in text
    assert "actions.nothing.method: is required." in text
    assert "body: must be one of json, form, query (not 'xml')." in text
    assert "limits.rate_limit: must be more than 0 (not 0)." in text
    assert all("\n" not in p for p in problems)


def test_semantic_problems_are_listed_together(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        name: sem
        base_url: https://{region}.sem.test
        endpoint_config_keys: [zone]
        auth:
          kinds: [bearer, oauth2]
          api_key: {secret: k, header: X-Key, query: key}
        actions:
          - {name: a, method: GET, path: "/a/{id}", params: {}}
          - {name: a, method: GET, path: /b, budget: missing}
          - {name: c, method: POST, path: /c, idempotent: true}
        streams:
          - name: s
            path: /s/{team}
            primary_key: id
            since_param: since
            pagination: {style: cursor, cursor_field: x}
        """,
    )
    text = [p.split(": ", 1)[1] for p in problems]
    assert text == [
        "endpoint_config_keys: zone is not one of config_keys (nor a placeholder).",
        "auth.bearer: auth.kinds lists bearer but auth.bearer is missing.",
        "auth.oauth2: auth.kinds lists oauth2 but auth.oauth2 is missing.",
        "auth.api_key: is set but auth.kinds does not list api_key.",
        "auth.oauth2.token_url: is required.",
        "auth.oauth2.authorize_url: is required.",
        "actions.a: two actions are named a.",
        "actions.a.path: placeholder {id} must be a required param.",
        "actions.a.budget: names no tier 'missing' (limits.tiers: none declared).",
        "actions.c.idempotent: needs the connector's idempotency_header.",
        "streams.s.path: placeholder {team} must be a required param (or a config key).",
        "streams.s.since_param: needs a replication_key.",
        "streams.s.pagination.cursor_field: cursor pagination takes cursor_param, next_field, "
        "limit_param, not cursor_field.",
    ]


def test_unreadable_files_are_one_sentence(tmp_path: Path) -> None:
    where = tmp_path / "m.yaml"
    assert problems_of(tmp_path, "name: [unclosed\n") == [
        f"{where}: is not valid YAML at line 2, column 1 (expected ',' or ']', but got "
        "'<stream end>')."
    ]
    assert problems_of(tmp_path, "- a list\n") == [
        f"{where}: (top level): must be a table of keys (not list)."
    ]
    toml = problems_of(tmp_path, "name = \n", "m.toml")
    assert len(toml) == 1 and toml[0].startswith(f"{tmp_path / 'm.toml'}: is not valid TOML (")
    assert check_manifest(tmp_path / "absent.yaml") == [
        f"{tmp_path / 'absent.yaml'}: no such manifest file."
    ]
    assert check_manifest(tmp_path / "m.json") == [
        f"{tmp_path / 'm.json'}: a manifest must be a .yaml, .yml, .toml file."
    ]


def test_manifest_error_is_a_configuration_error() -> None:
    error = ManifestError(["f: a: wrong.", "f: b: wrong."])
    assert isinstance(error, ConfigurationError)
    assert error.problems == ("f: a: wrong.", "f: b: wrong.")


def test_a_placeholder_without_its_config_is_one_sentence(tmp_path: Path) -> None:
    cls = load_manifest(CHAT)
    with pytest.raises(ConfigurationError, match=r"^chat's base_url needs config workspace, which"):
        cls({}, {"bot_token": "t"})
    with pytest.raises(UsageError, match="needs config workspace"):
        cls.oauth_client({"client_id": "x"}, {"client_secret": "s"})
    client = cls.oauth_client({"client_id": "x", "workspace": "a/b"}, {"client_secret": "s"})
    assert client.token_url == "https://a%2Fb.chat.test/api/oauth.access"


CLIENT_CREDENTIALS = """\
name: cc
base_url: https://api.cc.test
auth:
  kinds: [oauth2, client_credentials]
  oauth2:
    authorize_url: https://login.cc.test/{tenant}/authorize
    token_url: https://login.cc.test/{tenant}/token
    scopes: [read, offline_access]
  client_credentials:
    token_url: https://login.cc.test/{tenant}/app-token
    scopes: [.default]
    token_auth_method: client_secret_post
"""


def test_client_credentials_have_their_own_endpoint_and_scopes(tmp_path: Path) -> None:
    cls = load_manifest(write(tmp_path, CLIENT_CREDENTIALS))
    secrets = {"client_secret": "s"}
    config = {"client_id": "id", "tenant": "t1"}
    code = cls.oauth_client(config, secrets)
    assert (code.token_url, code.scopes, code.grant_type) == (
        "https://login.cc.test/t1/token", ("read", "offline_access"), "authorization_code",
    )  # fmt: skip
    app = cls.oauth_client({**config, "grant_type": "client_credentials"}, secrets)
    assert (app.token_url, app.scopes, app.auth_method, app.grant_type) == (
        "https://login.cc.test/t1/app-token", (".default",), "client_secret_post",
        "client_credentials",
    )  # fmt: skip
    assert cls.initial_status(secrets, {**config, "grant_type": "client_credentials"}) == "active"


def test_a_connector_offering_only_client_credentials_uses_them(tmp_path: Path) -> None:
    text = CLIENT_CREDENTIALS.replace(
        "kinds: [oauth2, client_credentials]", "kinds: [client_credentials]"
    )
    text = text[: text.index("  oauth2:")] + text[text.index("  client_credentials:") :]
    cls = load_manifest(write(tmp_path, text))
    client = cls.oauth_client({"client_id": "id", "tenant": "t1"}, {"client_secret": "s"})
    assert client.grant_type == "client_credentials"
    assert client.token_url == "https://login.cc.test/t1/app-token"
    assert cls.initial_status({"client_secret": "s"}, {}) == "active"
    with pytest.raises(UsageError, match="cc does not offer the authorization_code grant"):
        cls.validate_config({"grant_type": "authorization_code"})


def test_a_streams_own_checks_are_reported_under_its_key(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        name: s
        base_url: https://s.test
        streams:
          - {name: a, path: /a, primary_key: id, order: newest_first}
          - {name: b, path: /b, primary_key: id, pagination: {style: after_max, size: 1}}
        """,
    )
    assert [p.split(": ", 1)[1] for p in problems] == [
        "streams.a: a newest_first stream needs a replication_key.",
        "streams.b.pagination.size: after_max pagination takes param, field, limit_param, "
        "not size.",
    ]
