"""The gateway's OpenAPI 3.1 document, written by hand: the endpoints are few and stable."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_HTML = {"text/html": {"schema": {"type": "string"}}}


def _page(description: str) -> dict[str, Any]:
    return {"description": description, "content": _HTML}


def _query(name: str, description: str, *, required: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


def openapi_document(public_url: str, version: str) -> dict[str, Any]:
    """The document, with the gateway's public URL as its one server."""
    check = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
        "required": ["ok", "detail"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "spark-integrations gateway",
            "version": version,
            "description": "HTTP entry points of the integration fleet: health, metrics and "
            "the OAuth 2.0 connect flow.",
        },
        "servers": [{"url": public_url.rstrip("/")}],
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness: the gateway process answers.",
                    "operationId": "healthz",
                    "responses": {
                        "200": {
                            "description": "Alive.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"ok": {"const": True}},
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the broker and the store answer.",
                    "operationId": "readyz",
                    "responses": {
                        code: {
                            "description": text,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "ok": {"type": "boolean"},
                                            "checks": {
                                                "type": "object",
                                                "properties": {"broker": check, "store": check},
                                            },
                                        },
                                    }
                                }
                            },
                        }
                        for code, text in (
                            ("200", "Ready."),
                            ("503", "The broker or the store does not answer; see checks."),
                        )
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of this gateway process.",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "The OpenAPI document."}},
                }
            },
            "/oauth/{connection_id}/authorize": {
                "get": {
                    "summary": "Open the signed link `spark-integrations connect` printed.",
                    "description": "Single use and short-lived; redirects to the provider's "
                    "authorisation page with a fresh state and a PKCE challenge.",
                    "operationId": "oauthAuthorize",
                    "parameters": [
                        {
                            "name": "connection_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        _query("flow", "The flow the link starts."),
                        _query("exp", "Expiry of the link, in UNIX seconds."),
                        _query("sig", "Signature over the connection, the flow and the expiry."),
                    ],
                    "responses": {
                        "302": {"description": "To the provider's authorisation page."},
                        "400": _page("Unsigned or malformed link."),
                        "403": _page("Tampered link."),
                        "404": _page("Unknown flow or connection."),
                        "409": _page("The link was used already."),
                        "410": _page("The link has expired."),
                        "503": _page("The store is unreachable."),
                    },
                }
            },
            "/oauth/callback": {
                "get": {
                    "summary": "Where the provider sends the person back (the redirect URI).",
                    "description": "Claims the state once, exchanges the code and stores the "
                    "tokens encrypted; the connection becomes active.",
                    "operationId": "oauthCallback",
                    "parameters": [
                        _query("state", "The state the gateway gave the provider."),
                        _query("code", "The authorisation code.", required=False),
                        _query("error", "The provider's error code.", required=False),
                        _query("error_description", "The provider's words.", required=False),
                    ],
                    "responses": {
                        "200": _page("Connected."),
                        "400": _page("Forged, replayed or expired state, or a refusal."),
                        "409": _page("The flow was abandoned by `connect`."),
                        "502": _page("The provider's token endpoint failed."),
                        "503": _page("The store is unreachable."),
                    },
                }
            },
        },
    }
