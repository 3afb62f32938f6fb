"""Connectors: what each provider offers, how the fleet finds them, and the framework they share.

A connector declares its actions and streams (:mod:`connectors.base`, :mod:`connectors.actions`),
authenticates with one of :mod:`connectors.auth` (OAuth 2.0 grants in :mod:`connectors.oauth`),
walks listings with one of :mod:`connectors.pagination`, and sends every request through
:mod:`connectors.http`, where answers are judged. Connectors know HTTP and their provider, never
Celery nor the store.
"""

from __future__ import annotations

from spark_integrations.connectors.actions import Action
from spark_integrations.connectors.auth import (
    APIKeyAuthenticator,
    BasicAuthenticator,
    BearerTokenAuthenticator,
    JWTAuthenticator,
    OAuth2Authenticator,
)
from spark_integrations.connectors.base import Answer, Budget, CallPolicy, Connector, TokenSource
from spark_integrations.connectors.oauth import (
    ClientCredentialsAuthenticator,
    OAuthClient,
    TokenEndpoint,
)
from spark_integrations.connectors.pagination import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
    extract,
)
from spark_integrations.connectors.registry import discover_connectors, get_connector
from spark_integrations.connectors.streams import Page, Stream

__all__ = [
    "APIKeyAuthenticator",
    "Action",
    "Answer",
    "BasicAuthenticator",
    "BearerTokenAuthenticator",
    "Budget",
    "CallPolicy",
    "ClientCredentialsAuthenticator",
    "Connector",
    "CursorPaginator",
    "JWTAuthenticator",
    "LinkHeaderPaginator",
    "NextTokenPaginator",
    "OAuth2Authenticator",
    "OAuthClient",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "Paginator",
    "Stream",
    "TokenEndpoint",
    "TokenSource",
    "discover_connectors",
    "extract",
    "get_connector",
]
