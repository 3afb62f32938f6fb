"""From a manifest's data (schema-valid) to the ClassVars of a connector class, with the checks
the schema cannot make; each problem one sentence (``FILE: key.path: what is wrong``)."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from spark_integrations.connectors import pagination
from spark_integrations.connectors.actions import Action, JSONType
from spark_integrations.connectors.base import Connector
from spark_integrations.connectors.limits import Tier
from spark_integrations.connectors.manifest_schema import option_type_problem
from spark_integrations.connectors.pagination.base import Paginator
from spark_integrations.connectors.rules import ErrorRule
from spark_integrations.connectors.streams import Param, Stream
from spark_integrations.connectors.webhook_events import build_events

__all__ = ["PAGINATION_STYLES", "build_attrs", "class_name", "hook_class"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def _styles() -> dict[str, Callable[..., Paginator]]:
    return {
        "cursor": pagination.CursorPaginator,
        "next_token": pagination.NextTokenPaginator,
        "offset": pagination.OffsetPaginator,
        "page": pagination.PageNumberPaginator,
        "link": pagination.LinkHeaderPaginator,
        "after_last": pagination.AfterLastPaginator,
        "after_max": pagination.AfterMaxPaginator,
        "next_url": pagination.NextURLPaginator,
        "none": pagination.SinglePagePaginator,
    }


#: Pagination style names and the paginator each builds.
PAGINATION_STYLES = _styles()
# The keywords every paginator takes from the stream, never from the manifest's options.
_OWN = {"start_value", "page_size", "connector"}


def class_name(name: str) -> str:
    """The class a manifest's connector gets: ``google_sheets`` → ``GoogleSheets``."""
    return "".join(part.capitalize() for part in name.split("_")) or "Declared"


def hook_class(data: Mapping[str, Any], where: str) -> tuple[type[Connector] | None, list[str]]:
    """The class the connector derives from: ``class:`` (a Connector subclass) or Connector."""
    spec = data.get("class")
    if not spec:
        return Connector, []
    module_name, _, attr = str(spec).partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the manifest's problem to report
        return None, [f"{where}: class: cannot import {module_name} ({type(exc).__name__})."]
    found = getattr(module, attr, None)
    if not (isinstance(found, type) and issubclass(found, Connector)):
        return None, [f"{where}: class: {spec} is not a Connector subclass."]
    return found, []


def _placeholders(text: str) -> list[str]:
    return list(dict.fromkeys(_PLACEHOLDER.findall(text)))


class _Builder:
    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where
        self.problems: list[str] = []
        self.attrs: dict[str, Any] = {}

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{self.where}: {path}: {text}")

    # -- connector-wide -----------------------------------------------------------------------

    def build(self) -> None:
        d = self.data
        a = self.attrs
        a["name"] = d["name"]
        for key, attr in (("title", "title"), ("docs", "docs_path")):
            if key in d:
                a[attr] = d[key]
        config_keys = list(d.get("config_keys", ()))
        endpoint_keys = list(d.get("endpoint_config_keys", ()))
        url_fields = [("base_url", d.get("base_url"))]
        auth = d.get("auth", {})
        for kind in ("oauth2", "client_credentials"):
            for key in ("authorize_url", "token_url"):
                url_fields.append((f"auth.{kind}.{key}", auth.get(kind, {}).get(key)))
        for path, url in url_fields:
            for key in _placeholders(url or ""):
                if not _IDENT.match(key):
                    self.problem(path, f"placeholder {{{key}}} is not a config key name.")
                    continue
                config_keys.append(key)
                endpoint_keys.append(key)
        for key in endpoint_keys:
            if key not in config_keys and key != "base_url":
                self.problem(
                    "endpoint_config_keys", f"{key} is not one of config_keys (nor a placeholder)."
                )
        a["config_keys"] = tuple(dict.fromkeys(config_keys))
        a["endpoint_config_keys"] = tuple(dict.fromkeys(endpoint_keys))
        if "base_url" in d:
            a["default_base_url"] = d["base_url"]
        self.auth(auth, list(d.get("secret_keys", ())))
        self.limits(d.get("limits", {}))
        if "idempotency_header" in d:
            a["idempotency_header"] = d["idempotency_header"]
        if "body" in d:
            a["body_encoding"] = d["body"]
        self.errors(d.get("errors", {}))
        if "webhooks" in d and "scheme" in d["webhooks"]:
            scheme = d["webhooks"]["scheme"]
            a["webhook_scheme"] = None if scheme == "none" else scheme
        a["actions"] = self.actions(d.get("actions", []))
        a["streams"] = self.streams(d.get("streams", []))
        events = d.get("webhooks", {}).get("events")
        if events:
            scheme = d["webhooks"].get("scheme", "none")
            a["webhook_events"], problems = build_events(events, a["streams"], scheme)
            self.problems += [f"{self.where}: {problem}" for problem in problems]

    def auth(self, auth: Mapping[str, Any], secret_keys: list[str]) -> None:
        settings = {k: v for k, v in auth.items() if k != "kinds"}
        kinds = list(auth.get("kinds") or settings)
        for kind in kinds:
            if kind not in settings:
                self.problem(f"auth.{kind}", f"auth.kinds lists {kind} but auth.{kind} is missing.")
        for kind in settings:
            if kind not in kinds:
                self.problem(f"auth.{kind}", f"is set but auth.kinds does not list {kind}.")
        direct: list[tuple[str, ...]] = []
        declared: dict[str, dict[str, str]] = {}
        for kind in kinds:
            block = settings.get(kind) or {}
            if kind in ("bearer", "secret_url"):
                declared[kind] = {k: str(v) for k, v in block.items()}
                direct.append((block.get("secret", ""),))
            elif kind == "api_key":
                if "header" in block and "query" in block:
                    self.problem("auth.api_key", "takes header or query, not both.")
                if "query" in block and "scheme" in block:
                    self.problem("auth.api_key.scheme", "applies to a header, not to query.")
                declared[kind] = {k: str(v) for k, v in block.items()}
                direct.append((block.get("secret", ""),))
            elif kind == "basic":
                declared[kind] = {k: str(v) for k, v in block.items()}
                direct.append(tuple(s for s in (block["username"], block["password"]) if s))
            elif kind == "jwt_app":
                # The hook's signer reads these; holding the key (``secret``) is enough to call.
                declared[kind] = {k: str(v) for k, v in block.items()}
                if block.get("secret"):
                    direct.append((str(block["secret"]),))
        if declared:
            self.attrs["auth_settings"] = declared
        if "oauth2" in kinds or "client_credentials" in kinds:
            self.attrs["oauth"] = True
            code = settings.get("oauth2") or {}
            cc = settings.get("client_credentials") or {}
            # The code flow's settings are the connector's OAuth settings (the client
            # credentials' when it offers no code flow); the grant's own differences apart.
            self.oauth_settings(code if "oauth2" in kinds else cc)
            if cc:
                self.attrs["client_credentials_settings"] = {
                    k: tuple(v) if k == "scopes" else v
                    for k, v in cc.items()
                    if k in ("token_url", "scopes", "token_auth_method")
                }
            if "oauth2" in kinds and "token_url" not in code:
                self.problem("auth.oauth2.token_url", "is required.")
            if "oauth2" in kinds and "authorize_url" not in code:
                self.problem("auth.oauth2.authorize_url", "is required.")
            if "client_credentials" in kinds and "token_url" not in {**code, **cc}:
                self.problem("auth.client_credentials.token_url", "is required.")
        needed = [s for group in direct for s in group if s]
        self.attrs["secret_keys"] = tuple(dict.fromkeys([*secret_keys, *needed]))
        self.attrs["direct_credentials"] = tuple(g for g in direct if all(g))
        self.attrs["auth_kinds"] = tuple(kinds)

    def oauth_settings(self, block: Mapping[str, Any]) -> None:
        for key in ("authorize_url", "token_url", "token_auth_method", "refresh_idle_after"):
            if key in block:
                self.attrs[key] = block[key]
        if "scopes" in block:
            self.attrs["oauth_scopes"] = tuple(block["scopes"])
        if "authorize_params" in block:
            self.attrs["authorize_params"] = dict(block["authorize_params"])
        if "error_codes" in block:
            self.attrs["token_error_codes"] = dict(block["error_codes"])

    def limits(self, limits: Mapping[str, Any]) -> None:
        a = self.attrs
        for key, attr in (
            ("rate_limit", "rate_limit"),
            ("burst", "rate_limit_burst"),
            ("fleet_rate_limit", "fleet_rate_limit"),
            ("window", "rate_limit_window"),
        ):
            if key in limits:
                value = limits[key]
                a[attr] = float(value) if value is not None else None
        if "headers" in limits:
            a["rate_limit_headers"] = dict(limits["headers"])
        if "pause_when_spent" in limits:
            a["pause_when_spent"] = bool(limits["pause_when_spent"])
        tiers = {}
        for name, tier in limits.get("tiers", {}).items():
            tiers[name] = Tier(
                rate=float(tier["rate"]),
                per=tier.get("per", "connection"),
                burst=tier.get("burst"),
            )
        if tiers:
            a["tiers"] = tiers

    def errors(self, errors: Mapping[str, Any]) -> None:
        message = errors.get("message")
        if message:
            paths = (message,) if isinstance(message, str) else tuple(message)
            self.attrs["error_message_path"] = paths
        rules = []
        for i, rule in enumerate(errors.get("rules", [])):
            when = rule["when"]
            status = when.get("status")
            headers = {k: _listed(v) for k, v in when.get("headers", {}).items()}
            body = {k: _listed(v) for k, v in when.get("body", {}).items()}
            try:
                rules.append(
                    ErrorRule(
                        then=rule["then"],
                        status=tuple(status) if isinstance(status, list) else status,
                        body=body,
                        headers=headers,
                        present=tuple(when.get("present", ())),
                        wait_field=rule.get("wait_field"),
                        wait_header=rule.get("wait_header"),
                        wait=rule.get("wait"),
                        message=rule.get("message"),
                        pauses=rule.get("pauses"),
                    )
                )
            except ValueError as exc:
                self.problem(f"errors.rules.{i}", str(exc))
        if rules:
            self.attrs["error_rules"] = tuple(rules)

    # -- actions and streams ------------------------------------------------------------------

    def _budget(self, path: str, item: Mapping[str, Any]) -> str | None:
        budget = item.get("budget")
        tiers = self.data.get("limits", {}).get("tiers", {})
        if budget is not None and budget not in tiers:
            known = ", ".join(tiers) or "none declared"
            self.problem(f"{path}.budget", f"names no tier {budget!r} (limits.tiers: {known}).")
        return budget if isinstance(budget, str) else None

    def _unique(self, kind: str, items: list[Mapping[str, Any]]) -> None:
        seen: set[str] = set()
        for item in items:
            if item["name"] in seen:
                self.problem(f"{kind}.{item['name']}", f"two {kind} are named {item['name']}.")
            seen.add(item["name"])

    def actions(self, items: list[Mapping[str, Any]]) -> tuple[Action, ...]:
        self._unique("actions", items)
        built: list[Action] = []
        for item in items:
            path = f"actions.{item['name']}"
            required = {k: _json_type(v) for k, v in item.get("params", {}).items()}
            optional = {k: _json_type(v) for k, v in item.get("optional", {}).items()}
            for key in set(required) & set(optional):
                self.problem(f"{path}.optional.{key}", "is also a required param.")
            try:
                built.append(
                    Action(
                        item["name"],
                        item["method"],
                        item["path"],
                        params=required,
                        optional=optional,
                        idempotent=item.get("idempotent", False),
                        repeatable=item.get("repeatable", False),
                        body=item.get("body"),
                        budget=self._budget(path, item),
                        result=item.get("result"),
                        fixed=dict(item.get("fixed", {})),
                    )
                )
            except ValueError as exc:
                text = str(exc).split(": ", 1)[-1]
                self.problem(f"{path}.path", text)
            if item.get("idempotent") and "idempotency_header" not in self.data:
                self.problem(f"{path}.idempotent", "needs the connector's idempotency_header.")
        return tuple(built)

    def streams(self, items: list[Mapping[str, Any]]) -> tuple[Stream, ...]:
        self._unique("streams", items)
        built: list[Stream] = []
        for item in items:
            path = f"streams.{item['name']}"
            declared = {
                k: v if isinstance(v, dict) else {"type": v}
                for k, v in item.get("params", {}).items()
            }
            config_keys = self.attrs.get("config_keys", ())
            for key in _placeholders(item["path"]):
                if key in config_keys and key not in declared:
                    continue  # filled from the connection's config
                if key not in declared or not declared[key].get("required"):
                    self.problem(
                        f"{path}.path",
                        f"placeholder {{{key}}} must be a required param (or a config key).",
                    )
            replication = item.get("replication_key")
            if item.get("since_param") and not replication:
                self.problem(f"{path}.since_param", "needs a replication_key.")
            paginator, options = self.pagination(path, item.get("pagination", {"style": "none"}))
            page_size = item.get("page_size", 100)
            try:
                paginator(page_size=page_size, connector=self.data["name"], **options)
            except (ValueError, TypeError) as exc:
                self.problem(f"{path}.pagination", f"cannot be used ({exc}).")
            self._own_query(path, item, declared, paginator, options)
            try:
                parameters = tuple(
                    Param(
                        name=k,
                        required=bool(v.get("required", False)),
                        type=v.get("type", "string"),
                        description=v.get("description", ""),
                    )
                    for k, v in declared.items()
                )
                built.append(
                    Stream(
                        item["name"],
                        item["path"],
                        primary_key=item["primary_key"],
                        replication_key=replication,
                        since_param=item.get("since_param"),
                        paginator=paginator,
                        paginator_options=options,
                        records_path=item.get("records"),
                        page_size=page_size,
                        lookback=float(item.get("lookback", 0.0)),
                        params=dict(item.get("query", {})),
                        budget=self._budget(path, item),
                        parameters=parameters,
                        order=item.get("order", "oldest_first"),
                    )
                )
            except (ValueError, TypeError) as exc:
                text = str(exc).removeprefix(f"stream {item['name']}: ")
                self.problem(path, text)
        return tuple(built)

    def _own_query(
        self,
        path: str,
        item: Mapping[str, Any],
        declared: Mapping[str, Any],
        paginator: Callable[..., Paginator],
        options: Mapping[str, Any],
    ) -> None:
        """A stream parameter sent as a query parameter the stream sends itself (its
        ``since_param``, a fixed ``query`` field, its paginator's cursor or size) would be
        overwritten on every page: refused."""
        own = {str(item["since_param"]): "its since_param"} if item.get("since_param") else {}
        own.update({str(k): "a fixed query parameter" for k in item.get("query", {})})
        for name, param in inspect.signature(paginator).parameters.items():
            value = options.get(name, param.default)
            if name.endswith("param") and isinstance(value, str):
                own.setdefault(value, f"its paginator's {name}")
        placeholders = set(_placeholders(item["path"]))
        for key in declared:
            if key in own and key not in placeholders:
                self.problem(
                    f"{path}.params.{key}",
                    f"is sent by the stream itself ({own[key]}), so a value given for it "
                    "would be overwritten; name the parameter otherwise.",
                )

    def pagination(
        self, path: str, pagination: Mapping[str, Any]
    ) -> tuple[Callable[..., Paginator], dict[str, Any]]:
        style = pagination["style"]
        options = {k: v for k, v in pagination.items() if k != "style"}
        paginator = PAGINATION_STYLES.get(style)
        if paginator is None:
            known = ", ".join(PAGINATION_STYLES)
            self.problem(f"{path}.pagination.style", f"{style} is not known here ({known}).")
            return PAGINATION_STYLES["cursor"], {}
        signature = inspect.signature(paginator).parameters
        accepted = [p for p in signature if p not in _OWN and p not in ("self", "args", "kwargs")]
        for key, value in options.items():
            if key not in accepted:
                takes = ", ".join(accepted) or "no option"
                self.problem(
                    f"{path}.pagination.{key}", f"{style} pagination takes {takes}, not {key}."
                )
                continue
            wrong = option_type_problem(str(signature[key].annotation), value)
            if wrong:
                self.problem(f"{path}.pagination.{key}", wrong)
        return paginator, {k: v for k, v in options.items() if k in accepted}


def _listed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _json_type(declared: str | list[str]) -> JSONType:
    names = [declared] if isinstance(declared, str) else list(declared)
    types = tuple(_TYPES[n] for n in names)
    return types[0] if len(types) == 1 else types


def build_attrs(data: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """The connector's ClassVars from a schema-valid manifest, and the problems found."""
    builder = _Builder(data, where)
    builder.build()
    return builder.attrs, builder.problems
