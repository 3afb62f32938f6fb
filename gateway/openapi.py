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


_DETAIL = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        }
    }
}


def _detail(description: str) -> dict[str, Any]:
    return {"description": description, "content": _DETAIL}


def _spark_get(summary: str, operation: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation,
            "tags": ["spark"],
            "security": [{"sparkKey": []}],
            "responses": {
                "200": {"description": "OK.", "content": {"application/json": {"schema": schema}}},
                "401": _detail("No key issued (`expose key`), or a missing or wrong key."),
                "503": _detail("The store is unreachable."),
            },
        }
    }


def _spark_paths() -> dict[str, Any]:
    """The Automagik Agents source automagik-spark registers as ``PUBLIC_URL/spark``."""
    text = {"type": "string"}
    root = {
        "type": "object",
        "properties": {"name": text, "version": text, "description": text},
    }
    agent = {
        "type": "object",
        "properties": {
            "name": text,
            "type": {"enum": ["action", "sync"]},
            "description": text,
        },
    }
    answer = {
        "type": "object",
        "properties": {
            "message": {
                "type": "string",
                "description": "The task's result as compact JSON; or, past the wait, "
                "`task ID is STATE; ...` (the task goes on; its outcome is in the fleet's "
                "history).",
            },
            "session_id": text,
            "task_id": text,
            "success": {"const": True},
        },
    }
    return {
        "/spark/health": _spark_get(
            "Spark's health check of the source.",
            "sparkHealth",
            {"type": "object", "properties": {"status": {"const": "healthy"}}},
        ),
        "/spark": _spark_get("The source's name and version.", "sparkRootBare", root),
        "/spark/": _spark_get("The source's name and version.", "sparkRoot", root),
        "/spark/api/v1/agents": _spark_get(
            "The exposed actions and syncs (`expose list`), as agents.",
            "sparkAgents",
            {"type": "array", "items": agent},
        ),
        "/spark/api/v1/agent/{name}/run": {
            "post": {
                "summary": "Run an exposure: enqueue its call or sync and wait for the result.",
                "description": "An action's input (`message_content`) is merged into its "
                "params when it is a JSON object, else given to its one open text param. The "
                "answer waits up to SPARK_INTEGRATIONS_SPARK_WAIT seconds.",
                "operationId": "sparkRun",
                "tags": ["spark"],
                "security": [{"sparkKey": []}],
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": text}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "message_content": text,
                                    "session_name": {"type": ["string", "null"]},
                                    "user_id": text,
                                    "session_origin": text,
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Done, or still running past the wait.",
                        "content": {"application/json": {"schema": answer}},
                    },
                    "401": _detail("No key issued, or a missing or wrong key."),
                    "404": _detail("Nothing is exposed under that name."),
                    "413": _detail("The body is too large."),
                    "422": _detail("The input or the params do not fit the action."),
                    "502": _detail("The call or the sync failed (a dead letter says more)."),
                    "503": _detail("The store or the broker is unreachable; nothing was queued."),
                },
            }
        },
    }


def _webhook_paths() -> dict[str, Any]:
    """Webhook intake (CONTRACT.md, "Gateway")."""
    text = {"type": "string"}
    accepted = {
        "type": "object",
        "properties": {
            "ok": {"const": True},
            "event_id": text,
            "duplicate": {
                "type": "boolean",
                "description": "True for a delivery id stored before (processed once).",
            },
        },
        "required": ["ok", "event_id", "duplicate"],
    }
    path = {"in": "path", "required": True, "schema": text}
    return {
        "/webhooks/{provider}/{connection_id}": {
            "post": {
                "summary": "Take a provider's webhook delivery for one connection.",
                "description": "Verified with the provider's signature scheme and the "
                "connection's secret `webhook_secret`, stored, then processed by the workers "
                "(`integrations.process_webhook`). 2xx only once the event is durably stored. "
                "A handshake (Slack's url_verification, Discord's PING, Microsoft Graph's "
                "validationToken) is answered as its provider expects, and nothing is stored.",
                "operationId": "webhookReceive",
                "tags": ["webhooks"],
                "parameters": [
                    {"name": "provider", "description": "The connection's connector.", **path},
                    {"name": "connection_id", "description": "The connection's id.", **path},
                ],
                "requestBody": {
                    "required": True,
                    "description": "The provider's delivery, as it signed it.",
                    "content": {"*/*": {"schema": {}}},
                },
                "responses": {
                    "200": {"description": "A handshake, answered as the provider expects."},
                    "202": {
                        "description": "Stored (or stored before: `duplicate`); queued.",
                        "content": {"application/json": {"schema": accepted}},
                    },
                    "400": _detail("Malformed: not the provider's format, or a header doubled."),
                    "401": _detail(
                        "Bad or missing signature, or a timestamp outside the tolerance."
                    ),
                    "404": _detail(
                        "No such connection of that provider, or its connector takes no webhooks."
                    ),
                    "413": _detail("The body is over SPARK_INTEGRATIONS_WEBHOOK_MAX_BYTES."),
                    "503": _detail("The store is unreachable: nothing was stored; send again."),
                },
            }
        }
    }


def _console_paths() -> dict[str, Any]:
    """The operator's console (:mod:`gateway.console`): HTML for people, not an API."""
    security: list[dict[str, list[str]]] = [{"consoleBasic": []}, {"consoleBearer": []}]
    refusals = {
        "401": _page("Server mode: credentials missing or wrong (with the challenges)."),
        "403": _page(
            "Server mode with neither credential configured; embedded mode: not a loopback "
            "client, or not a loopback host name."
        ),
    }
    text = {"type": "string"}
    return {
        "/console": {
            "get": {
                "summary": "The operator's console: connections, syncs, budgets, breakers, "
                "dead letters, webhooks.",
                "description": "Server mode: Flower's credentials "
                "(SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH) or the token "
                "SPARK_INTEGRATIONS_CONSOLE_TOKEN; embedded mode: loopback clients only.",
                "operationId": "console",
                "tags": ["console"],
                "security": security,
                "responses": {
                    "200": _page("The console."),
                    **refusals,
                    "503": _page("The store is unreachable."),
                },
            }
        },
        "/console/dead-letters/{letter_id}/replay": {
            "post": {
                "summary": "Replay a dead letter (as `dlq replay ID`), from the console's form.",
                "description": "Needs the form's token (bound to the operator, the letter and "
                "its state, valid 30 minutes) and an Origin or Referer of the gateway itself.",
                "operationId": "consoleReplay",
                "tags": ["console"],
                "security": security,
                "parameters": [
                    {"name": "letter_id", "in": "path", "required": True, "schema": text}
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"token": text, "seen": text},
                                "required": ["token"],
                            }
                        }
                    },
                },
                "responses": {
                    "303": {"description": "Back to the console, with a flash message."},
                    "400": _page("Not the console's form."),
                    **refusals,
                    "404": _page("No such dead letter."),
                    "409": _page("Its kwargs cannot be decrypted with the configured keys."),
                    "503": _page("The store, the coordination Redis or the broker is down."),
                },
            }
        },
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
            "description": "HTTP entry points of the integration fleet: health, metrics, "
            "the OAuth 2.0 connect flow, webhook intake, the workflow source "
            "automagik-spark uses, and the operator's console.",
        },
        "components": {
            "securitySchemes": {
                "sparkKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "The key `spark-integrations expose key` printed.",
                },
                "consoleBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Flower's credentials, SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH.",
                },
                "consoleBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SPARK_INTEGRATIONS_CONSOLE_TOKEN.",
                },
            }
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
                    "summary": "Prometheus metrics of the whole fleet and of this gateway.",
                    "description": "The fleet's domain counted by every process (calls, "
                    "requests, 429s, budgets, breakers, tokens, syncs, dead letters, webhooks) "
                    "and read at scrape time (breaker and budget state, sync lag, queue depth), "
                    "beside this gateway process's own requests.",
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
            **_spark_paths(),
            **_webhook_paths(),
            **_console_paths(),
        },
    }
