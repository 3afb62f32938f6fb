"""Connectors: what each provider offers, how the fleet finds them, and the framework they share.

A connector declares its actions and streams (:mod:`connectors.base`, :mod:`connectors.actions`),
authenticates with one of :mod:`connectors.auth` (OAuth 2.0 grants in :mod:`connectors.oauth`),
walks listings with one of :mod:`connectors.pagination`, and sends every request through
:mod:`connectors.http`, where answers are judged. Connectors know HTTP and their provider, never
Celery nor the store.
"""

from __future__ import annotations

from connectors.actions import Action
from connectors.auth import (
    APIKeyAuthenticator,
    BasicAuthenticator,
    BearerTokenAuthenticator,
    JWTAuthenticator,
    OAuth2Authenticator,
)
from connectors.base import CallPolicy, Connector
from connectors.oauth import ClientCredentialsAuthenticator, OAuthClient, TokenEndpoint
from connectors.pagination import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
    extract,
)
from connectors.registry import discover_connectors, get_connector
from connectors.streams import Page, Stream

__all__ = [
    "APIKeyAuthenticator",
    "Action",
    "BasicAuthenticator",
    "BearerTokenAuthenticator",
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
    "discover_connectors",
    "extract",
    "get_connector",
]
