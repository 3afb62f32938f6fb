"""What a connector declares about itself: names, config and secret keys, actions, streams,
budgets, OAuth endpoints; and the checks a connection's config and secrets must pass.

:class:`ConnectorDeclaration` holds the class side of a connector (everything known without a
connection); :class:`connectors.base.Connector` adds the client of one connection. A new
connector usually declares everything and overrides nothing. The config and secret checks
live in :mod:`connectors.validation`, the OAuth client's derivation in
:mod:`connectors.oauth_config`; the classmethods here delegate to them and stay overridable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from spark_integrations.connectors import http
from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.limits import Tier
from spark_integrations.connectors.oauth import OAuthClient
from spark_integrations.connectors.oauth_config import build_oauth_client
from spark_integrations.connectors.rules import ErrorRule
from spark_integrations.connectors.streams import Stream
from spark_integrations.connectors.validation import check_config, check_secrets
from spark_integrations.connectors.webhook_events import EventRefresh, event_matches
from spark_integrations.constants import CONNECTION_URL_KEYS
from spark_integrations.errors import UsageError

__all__ = ["COMMON_CONFIG_KEYS", "CallPolicy", "ConnectorDeclaration"]


@dataclass(frozen=True)
class CallPolicy:
    """How the fleet treats calls on one connection: budgets for requests, retries, failures."""

    rate_limit: float
    rate_limit_burst: float | None
    fleet_rate_limit: float | None
    retry_attempts: int
    retry_window: float
    breaker_fail_max: int
    breaker_reset_timeout: float


# Every HTTP connector accepts these: base_url and rate_limit (CONTRACT.md, "Connector
# configuration"), and the call policy, tunable per connection.
POLICY_CONFIG_KEYS = ("retry_attempts", "retry_window", "breaker_fail_max", "breaker_reset_timeout")
COMMON_CONFIG_KEYS = ("base_url", "rate_limit", *POLICY_CONFIG_KEYS)
#: HTTP methods that change nothing at the provider (RFC 9110, section 9.2.1): safe to resend.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OAUTH_CONFIG_KEYS = (
    "client_id",
    "authorize_url",
    "token_url",
    "scopes",
    "token_auth_method",
    "authorize_params",
    "grant_type",
    "refresh_idle_after",
)


_Named = TypeVar("_Named", Action, Stream)


class ConnectorDeclaration:
    """The class side of a connector: what it offers and how its connections are checked."""

    name: ClassVar[str]
    #: Config keys beyond the common ones (``base_url``, ``rate_limit``).
    config_keys: ClassVar[tuple[str, ...]] = ()
    #: Config keys that, besides ``base_url``, ``token_url`` and ``authorize_url``, decide where
    #: requests go (a subdomain, a region, another endpoint). Changing one is changing where
    #: the credentials are sent: the connection's secrets are needed again and its OAuth tokens
    #: dropped. Keys named ``*_url`` hold URLs and meet the outbound URL policy too.
    endpoint_config_keys: ClassVar[tuple[str, ...]] = ()
    #: Names of the secrets a connection of this provider may hold.
    secret_keys: ClassVar[tuple[str, ...]] = ("webhook_secret",)
    #: Secrets that, alone, let the connector call the provider without an OAuth connect.
    direct_credentials: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: True when the provider offers the OAuth 2.0 authorisation-code flow.
    oauth: ClassVar[bool] = False
    actions: ClassVar[tuple[Action, ...]] = ()
    streams: ClassVar[tuple[Stream, ...]] = ()
    webhook_scheme: ClassVar[str | None] = None
    #: What incoming events do when no route of the connection handles them: per event type
    #: pattern, the streams they refresh (:mod:`connectors.webhook_events`).
    webhook_events: ClassVar[Mapping[str, tuple[EventRefresh, ...]]] = {}
    #: How connections may authenticate (``api_key``, ``bearer``, ``basic``, ``oauth2``,
    #: ``client_credentials``, ``jwt_app``, ``secret_url``), in order of preference; empty:
    #: derived from the credentials declared (:meth:`declared_auth_kinds`).
    auth_kinds: ClassVar[tuple[str, ...]] = ()

    #: Base URL when the connection's config gives none.
    default_base_url: ClassVar[str | None] = None
    #: Requests per second for one connection, unless its config sets ``rate_limit``.
    rate_limit: ClassVar[float] = 10.0
    #: Requests per second for all connections of this connector together (an app-wide
    #: limit some providers impose); ``None`` when the provider has none.
    fleet_rate_limit: ClassVar[float | None] = None
    #: Seconds of burst the fleet may use (how far a request may run ahead of an even
    #: schedule); ``None``: half an interval, enough to absorb scheduling jitter. Declare more
    #: only when the provider documents a burst allowance, and keep it below that.
    rate_limit_burst: ClassVar[float | None] = None
    #: Seconds over which the provider's ``X-RateLimit-Limit`` counts, when its documentation
    #: says; lets the fleet learn the real limit from the first answer.
    rate_limit_window: ClassVar[float | None] = None
    #: True when an answer saying the limit is spent (``remaining`` 0 with a reset) means no
    #: request may pass before the reset, as with a fixed window (GitHub's hour, Discord's
    #: buckets): the fleet then pauses the budget until the reset. False for a token bucket
    #: whose reset is when it is full again (the sandbox): at the limit, ``remaining`` is 0
    #: after nearly every request, and the fleet's own pacing at the learned rate keeps it
    #: under; pausing until the reset would idle most of the budget.
    pause_when_spent: ClassVar[bool] = True
    #: Request header carrying an idempotency key, when the provider honours one.
    idempotency_header: ClassVar[str | None] = None
    #: Retry budget of one call: attempts at most, within this many seconds.
    retry_attempts: ClassVar[int] = 8
    retry_window: ClassVar[float] = 600.0
    #: Circuit breaker: consecutive failures that open it, seconds before a probe.
    breaker_fail_max: ClassVar[int] = 5
    breaker_reset_timeout: ClassVar[float] = 30.0
    timeout: ClassVar[tuple[float, float]] = http.DEFAULT_TIMEOUT

    # What a manifest declares (connectors.manifest); a Python connector may set them too.
    #: What people call the provider ("Slack"); ``None``: its name.
    title: ClassVar[str | None] = None
    #: The connector's documentation page, relative to the repository (docs/connectors/X.md).
    docs_path: ClassVar[str | None] = None
    #: How static credentials are sent, by auth kind: ``bearer`` {secret, scheme}, ``api_key``
    #: {secret, header | query, scheme}, ``basic`` {username, password} (secret names; an
    #: empty password name sends an empty password), ``secret_url`` {secret} (the secret is the
    #: whole URL). Empty: the generic ``api_key`` / ``username`` + ``password`` secrets.
    auth_settings: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    #: Names of the provider's rate-limit headers (limit, remaining, reset, reset_after,
    #: bucket, retry_after); the common names when empty (connectors.limits).
    rate_limit_headers: ClassVar[Mapping[str, str]] = {}
    #: Named rate budgets actions and streams choose with ``budget=`` (connectors.limits.Tier).
    tiers: ClassVar[Mapping[str, Tier]] = {}
    #: How action params are sent by default: ``json``, ``form`` or ``query``.
    body_encoding: ClassVar[str] = "json"
    #: How answers are classified before the generic status rules, 2xx included
    #: (connectors.rules), first match wins.
    error_rules: ClassVar[tuple[ErrorRule, ...]] = ()
    #: Dotted body paths of the provider's error code and text, quoted in error messages.
    error_message_path: ClassVar[tuple[str, ...]] = ()
    #: What differs for the client-credentials grant (``token_url``, ``scopes``,
    #: ``token_auth_method``), when the provider offers it; empty: the OAuth settings.
    client_credentials_settings: ClassVar[Mapping[str, Any]] = {}

    # OAuth 2.0 (when ``oauth``): endpoints, absolute or relative to the base URL, overridable
    # per connection with config ``authorize_url`` and ``token_url``.
    authorize_url: ClassVar[str | None] = None
    token_url: ClassVar[str | None] = None
    #: Scopes asked for, unless the connection's config sets ``scopes``.
    oauth_scopes: ClassVar[tuple[str, ...]] = ()
    #: How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
    token_auth_method: ClassVar[str] = "client_secret_basic"
    #: Extra query parameters of the authorisation request (``access_type=offline``, ...).
    authorize_params: ClassVar[dict[str, str]] = {}
    #: Connect and read timeouts of token requests; a refresher holds the connection's refresh
    #: lock for at most their sum plus a margin, so they bound how long a dead refresher stalls
    #: the connection.
    token_timeout: ClassVar[tuple[float, float]] = (3.05, 20.0)
    #: Refresh a token left unused this many seconds, before the provider expires its refresh
    #: token for inactivity; ``None``: the provider does not. Config ``refresh_idle_after``.
    refresh_idle_after: ClassVar[float | None] = None
    #: The provider's own token-endpoint error codes and the RFC 6749 code each means, for a
    #: provider that answers a refused grant in words of its own (Slack's
    #: ``invalid_refresh_token``: ``invalid_grant``).
    token_error_codes: ClassVar[dict[str, str]] = {}

    @classmethod
    def action_names(cls) -> tuple[str, ...]:
        """Names of the actions this connector offers."""
        return tuple(a.name for a in cls.actions)

    @classmethod
    def get_action(cls, name: Any) -> Action:
        """The action called ``name``, or a :class:`UsageError` listing the known ones."""
        return cls._named("action", cls.actions, name)

    @classmethod
    def resend_safe(cls, action: Action) -> bool:
        """True when sending ``action`` again cannot apply it twice, so a request whose outcome
        is unknown may be resent: a safe method (``GET``, ``HEAD``, ``OPTIONS``: reading
        changes nothing), or the provider honours the idempotency key on it (by default,
        :attr:`idempotency_header` on an ``idempotent`` action), or the action is
        ``repeatable`` (applied twice, it leaves what once does). A provider deduplicating by
        another means (Discord's message ``nonce``) overrides this."""
        if action.method in SAFE_METHODS or action.repeatable:
            return True
        return bool(action.idempotent and cls.idempotency_header)

    @classmethod
    def refreshes_for(cls, event_type: str | None) -> tuple[EventRefresh, ...]:
        """The streams an event of ``event_type`` refreshes: those of every pattern of
        :attr:`webhook_events` it matches, in the order declared, each once."""
        found = [
            refresh
            for pattern, refreshes in cls.webhook_events.items()
            if event_matches(pattern, event_type)
            for refresh in refreshes
        ]
        return tuple(dict.fromkeys(found))

    @classmethod
    def stream_names(cls) -> tuple[str, ...]:
        """Names of the streams this connector offers."""
        return tuple(s.name for s in cls.streams)

    @classmethod
    def get_stream(cls, name: Any) -> Stream:
        """The stream called ``name``, or a :class:`UsageError` listing the known ones."""
        return cls._named("stream", cls.streams, name)

    @classmethod
    def _named(cls, kind: str, declared: tuple[_Named, ...], name: Any) -> _Named:
        for item in declared:
            if item.name == name:
                return item
        known = ", ".join(item.name for item in declared) or "none"
        raise UsageError(f"{cls.name} has no {kind} {name!r}; it offers {known}.")

    @classmethod
    def policy(cls, config: Mapping[str, Any]) -> CallPolicy:
        """The call policy of one connection: the connector's defaults, overridden by config."""

        def number(key: str, default: float) -> float:
            value = config.get(key)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value > 0
            ):
                return float(value)
            return default

        def count(key: str, default: int) -> int:
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return value
            return default

        return CallPolicy(
            rate_limit=number("rate_limit", cls.rate_limit),
            rate_limit_burst=cls.rate_limit_burst,
            fleet_rate_limit=cls.fleet_rate_limit,
            retry_attempts=count("retry_attempts", cls.retry_attempts),
            retry_window=number("retry_window", cls.retry_window),
            breaker_fail_max=count("breaker_fail_max", cls.breaker_fail_max),
            breaker_reset_timeout=number("breaker_reset_timeout", cls.breaker_reset_timeout),
        )

    @classmethod
    def oauth_client(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> OAuthClient:
        """This connection's OAuth client, or one :class:`UsageError` saying what is missing
        (:func:`connectors.oauth_config.build_oauth_client`)."""
        return build_oauth_client(cls, config, secrets)

    @classmethod
    def grant_type_of(cls, config: Mapping[str, Any] | None) -> str:
        """The OAuth grant a connection uses: config ``grant_type``, else the authorisation
        code, or client credentials for a connector offering only them."""
        grant = (config or {}).get("grant_type")
        if isinstance(grant, str) and grant:
            return grant
        kinds = getattr(cls, "auth_kinds", ())
        if "client_credentials" in kinds and "oauth2" not in kinds:
            return "client_credentials"
        return "authorization_code"

    @classmethod
    def uses_oauth_tokens(cls, secrets: Mapping[str, str]) -> bool:
        """True when calls authenticate with the connection's stored OAuth tokens: the
        connector offers OAuth and the secrets hold no direct credential."""
        if not cls.oauth:
            return False
        return not any(all(secrets.get(k) for k in needed) for needed in cls.direct_credentials)

    @classmethod
    def refresh_idle_limit(cls, config: Mapping[str, Any]) -> float | None:
        """Seconds a token may stay unrefreshed before the proactive refresh renews it."""
        value = config.get("refresh_idle_after", cls.refresh_idle_after)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None

    @classmethod
    def all_config_keys(cls) -> tuple[str, ...]:
        """Every config key a connection of this provider accepts."""
        extra = OAUTH_CONFIG_KEYS if cls.oauth else ()
        return tuple(dict.fromkeys((*COMMON_CONFIG_KEYS, *extra, *cls.config_keys)))

    @classmethod
    def endpoint_keys(cls) -> tuple[str, ...]:
        """Every config key that decides where this connector's requests go."""
        return tuple(dict.fromkeys((*CONNECTION_URL_KEYS, *cls.endpoint_config_keys)))

    @classmethod
    def url_keys(cls) -> tuple[str, ...]:
        """The endpoint keys that hold URLs (``*_url``), held to the outbound URL policy."""
        return tuple(
            key for key in cls.endpoint_keys() if key in CONNECTION_URL_KEYS or key.endswith("_url")
        )

    @classmethod
    def all_secret_keys(cls) -> tuple[str, ...]:
        """Every secret a connection of this provider may hold."""
        extra = ("client_secret",) if cls.oauth else ()
        return tuple(dict.fromkeys((*cls.secret_keys, *extra, "webhook_secret")))

    @classmethod
    def declared_auth_kinds(cls) -> tuple[str, ...]:
        """:attr:`auth_kinds` when declared; else derived: ``api_key`` and ``basic`` from
        :attr:`direct_credentials`, ``oauth2`` and ``client_credentials`` from :attr:`oauth`."""
        if cls.auth_kinds:
            return tuple(cls.auth_kinds)
        kinds: list[str] = []
        if ("api_key",) in cls.direct_credentials:
            kinds.append("api_key")
        if ("username", "password") in cls.direct_credentials:
            kinds.append("basic")
        if cls.oauth:
            kinds += ["oauth2", "client_credentials"]
        return tuple(kinds)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The connector as ``connectors list --json`` shows it (CONTRACT.md): each action and
        stream an object with its params (:mod:`connectors.describe`)."""
        from spark_integrations.connectors.describe import describe_connector

        return describe_connector(cls)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Refuse a config with unknown keys or ill-typed common values, in one sentence
        (:func:`connectors.validation.check_config`)."""
        check_config(cls, config)

    @classmethod
    def validate_secrets(cls, secrets: Mapping[str, str]) -> None:
        """Refuse secrets this connector does not know, naming the key but never the value
        (:func:`connectors.validation.check_secrets`)."""
        check_secrets(cls, secrets)

    @classmethod
    def initial_status(
        cls, secrets: Mapping[str, str], config: Mapping[str, Any] | None = None
    ) -> str:
        """``active`` when the secrets alone let the fleet call, else ``needs_auth`` (connect).

        A client-credentials connection is active once it holds its client secret: the fleet
        obtains (and re-obtains) its tokens itself.
        """
        for needed in cls.direct_credentials:
            if all(secrets.get(k) for k in needed):
                return "active"
        if cls.oauth and cls.grant_type_of(config) == "client_credentials":
            return "active" if secrets.get("client_secret") else "needs_auth"
        return "needs_auth" if cls.oauth else "active"
