"""A connector's client of one connection: how it authenticates, builds, sends and reads.

A connector is a class registered in the entry-point group ``spark_integrations.connectors``.
It knows HTTP and its provider, never Celery nor the store: its caller hands it config,
credentials and, for OAuth, a :class:`TokenSource`. The class side (names, keys, actions,
streams, budgets) is declared on :class:`connectors.declaration.ConnectorDeclaration`; an
instance, built from one connection's config and secrets, sends requests through
:mod:`connectors.http`.

One request is one call in each direction: :meth:`Connector.perform_action` or
:meth:`Connector.perform_page` builds the request, sends it (judged once, in
:func:`connectors.http.send`), reads the body once and returns an :class:`Answer` holding the
value and the response, whose headers the caller may learn from (a stream page's request and
parsing live in :mod:`connectors.reading`). A failure is a :class:`errors.ProviderError`
carrying the response, when there was one. What a request draws from the fleet's rate budget
is the connector's to say (:meth:`Connector.budgets`).

The hooks to override when a provider is unusual are :meth:`Connector.authenticator`,
:meth:`Connector.build_request`, :meth:`Connector.judge`, :meth:`Connector.parse_action`,
:meth:`Connector.budgets` and :meth:`Connector.learning_budget`; a provider that takes no
idempotency key but whose data shows what a request made adds :meth:`Connector.lookable` and
:meth:`Connector.look` (:mod:`connectors.looking`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import requests
from requests.auth import AuthBase

from spark_integrations.connectors import credentials, http, reading, rules
from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.auth import (
    BasicAuthenticator,
    BearerTokenAuthenticator,
    OAuth2Authenticator,
)
from spark_integrations.connectors.declaration import (
    COMMON_CONFIG_KEYS,
    CallPolicy,
    ConnectorDeclaration,
)
from spark_integrations.connectors.encoding import encode_params
from spark_integrations.connectors.limits import Budget, bucket_budget
from spark_integrations.connectors.looking import Look
from spark_integrations.connectors.pagination import Paginator, extract
from spark_integrations.connectors.streams import Page, Stream
from spark_integrations.connectors.templates import fill_placeholders
from spark_integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    ProviderError,
    UsageError,
)

__all__ = ["COMMON_CONFIG_KEYS", "Answer", "Budget", "CallPolicy", "Connector", "TokenSource"]

_V = TypeVar("_V")


class TokenSource(Protocol):
    """Where an OAuth connection's access tokens come from (the fleet's: :mod:`tasks.tokens`).

    The connector asks for a token once per request and reports a refusal; refreshing, locking
    and storing tokens are the source's business.
    """

    def __call__(self) -> str:
        """The access token to send with the request about to leave."""
        ...

    def invalidate(self) -> None:
        """The provider refused the token last handed out (a 401): the next must be newer."""
        ...


@dataclass(frozen=True)
class Answer(Generic[_V]):
    """A successful request: what it returns to the caller, and the response it came in."""

    value: _V
    response: requests.Response


class Connector(ConnectorDeclaration):
    """Base class of every connector: a declaration plus, in subclasses, the provider's client."""

    def __init__(
        self,
        config: Mapping[str, Any],
        secrets: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        token_source: TokenSource | None = None,
        scope: str = "",
    ) -> None:
        """Build a client for one connection.

        Args:
            config: the connection's config (validated when it was stored).
            secrets: the connection's decrypted secrets; kept out of every repr and message.
            session: the HTTP session to use (default: this process's pooled one).
            token_source: the access tokens of an OAuth connection.
            scope: what this client's budgets are named after (the connection's id); a client
                used on its own may leave it empty.
        """
        self.config = dict(config)
        self._secrets = dict(secrets)
        self.session = session or http.http_session()
        self.token_source = token_source
        self.scope = scope
        self.call_policy = type(self).policy(self.config)
        self._auth: AuthBase | None = None
        self._auth_built = False
        # Routes whose budget the provider named (its bucket header): operation → bucket.
        self._routes: dict[str, str] = {}
        self._secret_url = credentials.secret_url(self.auth_settings, self._secrets, self.name)
        base_url = self._secret_url or self.config.get("base_url") or self.default_base_url
        if not base_url:
            raise ConfigurationError(f"connection to {self.name} has no base_url in its config.")
        try:
            base_url = fill_placeholders(str(base_url), self.config, f"{self.name}'s base_url")
        except UsageError as exc:
            raise ConfigurationError(str(exc)) from None
        self.base_url = str(base_url).rstrip("/")

    def __repr__(self) -> str:
        if self._secret_url:  # the URL is the credential
            return f"<{type(self).__name__} (secret URL)>"
        return f"<{type(self).__name__} {self.base_url}>"

    # -- credentials --------------------------------------------------------------------------

    def signer(self) -> AuthBase | None:
        """A connector-supplied authenticator that signs requests itself (JWT-based app auth,
        request signatures); ``None`` by default. Overrides every other credential kind."""
        return None

    def secret(self, key: str) -> str | None:
        """One of the connection's secrets, for :meth:`signer` (never log it)."""
        return self._secrets.get(key)

    def authenticator(self) -> AuthBase | None:
        """How requests prove who they are, chosen from the secrets the connection holds."""
        signed = self.signer()
        if signed is not None:
            return signed
        if self.auth_settings:
            return self.declared_authenticator()
        if self._secrets.get("api_key"):
            return BearerTokenAuthenticator(self._secrets["api_key"])
        if self._secrets.get("username") and self._secrets.get("password"):
            return BasicAuthenticator(self._secrets["username"], self._secrets["password"])
        if self.token_source is not None:
            source = self.token_source
            return OAuth2Authenticator(source, on_invalidate=source.invalidate)
        if self.oauth:
            raise AuthenticationError(
                f"the {self.name} connection holds no credentials; connect it first.",
                connector=self.name,
            )
        return None

    def declared_authenticator(self) -> AuthBase | None:
        """The first of the declared auth kinds (``auth_kinds``, in order) whose secrets the
        connection holds, sent as ``auth_settings`` says (:mod:`connectors.credentials`)."""
        return credentials.declared_authenticator(
            getattr(self, "auth_kinds", ()) or tuple(self.auth_settings),
            self.auth_settings,
            self._secrets,
            connector=self.name,
            token_source=self.token_source,
            has_secret_url=bool(self._secret_url),
        )

    def auth(self) -> AuthBase | None:
        """This instance's authenticator, built once (it may cache a token)."""
        if not self._auth_built:
            self._auth = self.authenticator()
            self._auth_built = True
        return self._auth

    def reauthenticate(self) -> bool:
        """Drop a cached credential after a 401; False when there is nothing to renew."""
        invalidate = getattr(self.auth(), "invalidate", None)
        if invalidate is None:
            return False
        invalidate()
        return True

    # -- budgets ------------------------------------------------------------------------------

    def budgets(self, operation: Action | Stream | None = None) -> tuple[Budget, ...]:
        """The rate budgets one request of ``operation`` draws from, all charged at once.

        By default the connection's own (config ``rate_limit``), and the connector's app-wide
        one when it declares :attr:`fleet_rate_limit`. Override to give an action a tier of
        its own, or a group of endpoints the provider counts apart, by returning other keys.
        """
        policy = self.call_policy
        own = Budget(f"{self.name}:{self.scope}", policy.rate_limit, policy.rate_limit_burst)
        found = [own]
        if policy.fleet_rate_limit:
            found.append(Budget(self.name, policy.fleet_rate_limit, policy.rate_limit_burst))
        tier_name = getattr(operation, "budget", None)
        tier = self.tiers.get(tier_name) if tier_name else None
        if tier is not None and operation is not None and tier_name is not None:
            route = self._routes.get(operation.name, operation.name)
            key = tier.key(self.name, self.scope, tier_name, route)
            found.append(Budget(key, tier.rate, tier.burst, tier_name))
        return tuple(found)

    def learning_budget(
        self, budgets: tuple[Budget, ...], response: requests.Response
    ) -> Budget | None:
        """The budget an answer's rate-limit headers (and a 429) speak for: the request's tier
        when it has one (:attr:`tiers`), else the first. A ``route`` tier whose provider names
        its bucket (``rate_limit_headers['bucket']``, Discord's ``X-RateLimit-Bucket``) is keyed
        on that bucket from then on: routes in one bucket share one budget, as the provider
        counts them. An answer matching an error rule that ``pauses: connection`` (Discord's
        global limit) speaks for the connection's own budget."""
        if not budgets:
            return None
        matched = next((r for r in self.error_rules if r.matches(response)), None)
        if matched is not None and matched.pauses == "connection":
            return budgets[0]
        tiered = next((b for b in reversed(budgets) if b.tier is not None), None)
        if tiered is None:
            return budgets[0]
        tier = self.tiers.get(tiered.tier or "")
        bucket = self.rate_limit_hint(response).bucket if tier and tier.per == "route" else None
        if not bucket:
            return tiered
        return bucket_budget(tiered, bucket, self._routes)

    def rate_limit_hint(self, response: requests.Response) -> http.RateLimitHint:
        """What an answer's headers say about the provider's limit, read under the header
        names the connector declares (:attr:`rate_limit_headers`; the common ones otherwise)."""
        return http.rate_limit_hint(response.headers, names=self.rate_limit_headers or None)

    # -- one request --------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """Absolute URL of a path under the connection's base URL."""
        if path.startswith(("http://", "https://")):
            return path
        if self._secret_url and not path.strip("/"):
            return self.base_url  # the secret URL itself, not a sub-path of it
        if "{" in path:  # a stream path's config placeholders (params were filled, escaped)
            try:
                path = fill_placeholders(path, self.config, f"{self.name}'s path {path}")
            except UsageError as exc:
                raise ConfigurationError(str(exc)) from None
        return self.base_url + "/" + path.lstrip("/")

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one authenticated request and judge the answer (see :mod:`connectors.http`);
        a credential the provider echoes in an error is masked
        (:func:`connectors.credentials.mask_secrets`)."""
        try:
            response = http.send(
                method,
                self.url(path),
                connector=self.name,
                session=self.session,
                auth=self.auth(),
                timeout=self.timeout,
                judged=not self.error_rules,
                **kwargs,
            )
            if self.error_rules:
                self.judge_rules(response)
            self.judge(response)
        except ProviderError as exc:
            credentials.mask_secrets(exc, self._secrets.values())
            raise
        return response

    def judge_rules(self, response: requests.Response) -> None:
        """Apply the declared :attr:`error_rules` (2xx included), then, unless a rule said
        ``ok``, the generic status rules (:func:`connectors.http.judge`)."""
        if not rules.classify(
            self.error_rules,
            response,
            connector=self.name,
            message_paths=self.error_message_path,
        ):
            http.judge(response, connector=self.name)

    def judge(self, response: requests.Response) -> None:
        """Provider-specific judgement of a 2xx or 3xx answer; the generic rules ran already."""

    def build_request(self, action: Action, params: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of :meth:`request` for an action: params (and the action's
        ``fixed`` fields) as JSON, form or query, as the action or the connector declares;
        query for GET, DELETE and HEAD unless the action says otherwise."""
        path, rest = action.url_path(params)
        request: dict[str, Any] = {"method": action.method, "path": path}
        request.update(encode_params(action, {**rest, **action.fixed}, self.body_encoding))
        return request

    def parse_action(self, action: Action, response: requests.Response) -> Any:
        """What a successful action returns to the caller: the JSON body by default, or the
        part of it at the action's ``result`` path."""
        body = http.parse_json(response, connector=self.name)
        return extract(body, action.result) if action.result else body

    def perform_action(
        self, action: Action, params: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Answer[Any]:
        """Send an action's request with params already validated, and read its answer.

        Args:
            action: one of this connector's actions (:meth:`get_action`).
            params: the params :meth:`Action.validate` returned.
            idempotency_key: sent in :attr:`idempotency_header` when the action is idempotent
                and the provider honours one.
        """
        request = self.build_request(action, params)
        if idempotency_key and self.idempotency_header and action.idempotent:
            headers = dict(request.get("headers") or {})
            headers[self.idempotency_header] = idempotency_key
            request["headers"] = headers
        method = request.pop("method")
        path = request.pop("path")
        response = self.request(method, path, **request)
        return Answer(self.parse_action(action, response), response)

    def lookable(self, action: Action) -> bool:
        """True when :meth:`look` can tell whether a request of ``action`` whose answer was
        lost took effect; then the fleet looks before sending it again (default: False)."""
        return False

    def look(self, action: Action, params: dict[str, Any], since: float) -> Look:
        """Look in the provider's data for what a request of ``action`` with ``params``, first
        sent at ``since`` (epoch seconds, :data:`connectors.looking.LOOK_MARGIN` earlier), made.

        Sends its own requests (reads). Never raises for a provider's refusal: it returns
        ``unknown`` then; it may let a :class:`errors.RetriableError` through, and the fleet
        then looks again later within the call's retry policy. Default: ``unknown``."""
        return Look("unknown", detail=f"nothing: {self.name} has no look for {action.name}")

    def run_action(
        self, name: str, params: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Any:
        """Look an action up, validate its params, send it and return its parsed answer (for a
        connector used on its own; the fleet validates once and calls :meth:`perform_action`)."""
        action = self.get_action(name)
        return self.perform_action(
            action, action.validate(params), idempotency_key=idempotency_key
        ).value

    def perform_page(
        self,
        stream: Stream,
        *,
        since: Any = None,
        position: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Answer[Page]:
        """Read one page of a stream, its body parsed once (see :mod:`connectors.streams`).

        Args:
            stream: one of this connector's streams (:meth:`get_stream`).
            since: the replication-key value to filter from, inclusive (``None``: everything);
                for a ``delta`` stream, the provider's cursor the last run ended with, where
                its first page starts (a position of the stream's paginator).
            position: the paginator position a previous page handed back (``None``: the first
                page).
            params: the sync's stream parameters, as :meth:`Stream.validate_params` returned
                them: those named in the path fill it, the others go in the query.

        Raises:
            FatalError: the page holds no list of records where the stream says.
            ProviderError: as :meth:`request`.
            UsageError: a path parameter cannot fill its segment.
        """
        paginator, url, query = reading.page_request(
            self, stream, since=since, position=position, params=params
        )
        response = self.request("GET", url, params=query)
        return Answer(self.parse_page(stream, paginator, response), response)

    def read_page(
        self,
        name: str,
        *,
        since: Any = None,
        position: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Page:
        """Read one page of the stream called ``name`` (:meth:`perform_page`), its parameters
        validated first."""
        stream = self.get_stream(name)
        checked = stream.validate_params(params)
        return self.perform_page(stream, since=since, position=position, params=checked).value

    def parse_page(self, stream: Stream, paginator: Paginator, response: requests.Response) -> Page:
        """The page an answer holds: its records, where the next page is, its lowest and highest
        replication values and, on a delta stream's last page, the paginator's
        ``final_cursor`` (the provider's delta cursor) when it has one
        (:func:`connectors.reading.parse_page`)."""
        return reading.parse_page(self, stream, paginator, response)
