"""What ``connectors list --json`` shows of a connector (CONTRACT.md): each action and each
stream as an object with its declared parameters, the auth kinds, the keys and the docs page.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from spark_integrations.connectors.actions import Action, JSONType
from spark_integrations.connectors.streams import Param, Stream

if TYPE_CHECKING:
    from spark_integrations.connectors.declaration import ConnectorDeclaration

__all__ = ["AUTH_KINDS", "action_view", "describe_connector", "json_type", "stream_view"]

#: The auth kinds a connector may declare (``auth_kinds``).
AUTH_KINDS = ("api_key", "bearer", "basic", "oauth2", "client_credentials", "jwt_app", "secret_url")
_JSON_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
    type(None): "null",
}
# The repository's root, where docs/connectors/NAME.md lives in a checkout.
_ROOT = Path(__file__).resolve().parent.parent


def json_type(expected: JSONType) -> str:
    """An action param's Python types as a JSON type name (``"string"``; ``"number"`` for an
    int or a float; several joined with ``|``)."""
    types = expected if isinstance(expected, tuple) else (expected,)
    names = list(dict.fromkeys(_JSON_NAMES.get(t, t.__name__) for t in types))
    if set(names) == {"integer", "number"}:
        return "number"
    return "|".join(names)


def _param(param: Param) -> dict[str, Any]:
    view: dict[str, Any] = {"name": param.name, "required": param.required, "type": param.type}
    if param.description:
        view["description"] = param.description
    return view


def action_view(action: Action, resend_safe: bool | None = None) -> dict[str, Any]:
    """One action: method, path, params (required first, then optional), idempotency, budget."""
    params = [
        {"name": key, "required": True, "type": json_type(kind)}
        for key, kind in action.params.items()
    ]
    params += [
        {"name": key, "required": False, "type": json_type(kind)}
        for key, kind in action.optional.items()
    ]
    return {
        "name": action.name,
        "method": action.method,
        "path": action.path,
        "params": params,
        "idempotent": action.idempotent,
        "resend_safe": action.idempotent if resend_safe is None else resend_safe,
        "budget": getattr(action, "budget", None),
    }


def stream_view(stream: Stream) -> dict[str, Any]:
    """One stream: path, parameters, primary and replication keys, order, incremental."""
    return {
        "name": stream.name,
        "path": stream.path,
        "params": [_param(p) for p in stream.parameters],
        "primary_key": stream.primary_key,
        "replication_key": stream.replication_key,
        "order": stream.order,
        # Whether a run reads only what changed since the last one: filtered by the provider,
        # read from its delta cursor, or newest first down to the last run's cursor.
        "incremental": stream.incremental or stream.order in ("newest_first", "delta"),
    }


def docs_page(cls: type[ConnectorDeclaration]) -> str | None:
    """The connector's docs page: declared, or docs/connectors/NAME.md when the checkout holds
    it; ``None`` otherwise."""
    declared = getattr(cls, "docs_path", None)
    if declared:
        return str(declared)
    page = f"docs/connectors/{cls.name}.md"
    return page if (_ROOT / page).is_file() else None


def describe_connector(cls: type[ConnectorDeclaration]) -> dict[str, Any]:
    """The connector as ``connectors list --json`` shows it."""
    return {
        "name": cls.name,
        "title": getattr(cls, "title", None) or cls.name,
        "actions": [action_view(a, cls.resend_safe(a)) for a in cls.actions],
        "streams": [stream_view(s) for s in cls.streams],
        "webhook_scheme": cls.webhook_scheme,
        # What an incoming event no route handles does: the streams it refreshes, by pattern.
        "webhook_events": {
            pattern: [refresh.view() for refresh in refreshes]
            for pattern, refreshes in getattr(cls, "webhook_events", {}).items()
        },
        "config_keys": list(cls.all_config_keys()),
        "secret_keys": list(cls.all_secret_keys()),
        "auth_kinds": list(cls.declared_auth_kinds()),
        "endpoint_config_keys": list(cls.endpoint_config_keys),
        "docs": docs_page(cls),
    }
