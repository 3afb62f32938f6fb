"""The gateway's ASGI application: health, metrics, OpenAPI, the OAuth connect flow, webhook
intake (:mod:`gateway.webhooks`), the operator's console (:mod:`gateway.console`), and the
``/spark`` workflow source automagik-spark runs exposed actions and syncs through
(:mod:`gateway.spark_source`).

:func:`create_app` builds one Starlette app over one set of settings. Endpoints are plain
functions that Starlette runs in its thread pool: the store and the provider are reached with
blocking clients, as everywhere else in the fleet.

No request a client sends produces a traceback: refusals are 4xx pages, an unreachable store a
503 page, and anything unexpected a 500 page with one sentence while the exception goes to the
log. Logs never hold a query string of ``/oauth/*`` (codes, states, signatures), nor a token,
nor a header (spark's ``x-api-key``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from importlib.metadata import PackageNotFoundError, version

from celery import Celery
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spark_integrations.errors import (
    IntegrationError,
    NotFoundError,
    ProviderError,
    StoreError,
    UsageError,
)
from spark_integrations.gateway.console import Console
from spark_integrations.gateway.fleet_metrics import FleetMetrics
from spark_integrations.gateway.flows import ConnectFlows, FlowRefusedError
from spark_integrations.gateway.health import Preparation, readiness
from spark_integrations.gateway.links import Signer
from spark_integrations.gateway.openapi import openapi_document
from spark_integrations.gateway.pages import json_answer, page, redirect
from spark_integrations.gateway.spark_source import SparkSource
from spark_integrations.gateway.webhooks import WebhookEndpoint
from spark_integrations.settings import Settings, hide_password
from spark_integrations.store.crypto import SecretBox
from spark_integrations.store.engine import session_scope

__all__ = ["GatewayMetrics", "create_app"]

logger = logging.getLogger("gateway")

SessionFactory = Callable[[], AbstractContextManager[Session]]


class GatewayMetrics:
    """The gateway's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        """Create the registry and its counters."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "spark_integrations_gateway_requests",
            "HTTP requests answered by the gateway, by route template and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.oauth_flows = Counter(
            "spark_integrations_oauth_flows",
            "Steps of the OAuth connect flow, by outcome: redirected (a link was accepted), "
            "succeeded, failed (the flow ended failed), refused (nothing was stored).",
            ["outcome"],
            registry=self.registry,
        )
        self.spark_runs = Counter(
            "spark_integrations_spark_runs",
            "Runs automagik-spark asked of /spark, by exposure kind (action, sync; unknown when "
            "refused before the exposure was found) and outcome: completed (answered with the "
            "result), waited (answered with the task id; the task goes on), failed (the task "
            "failed), refused (bad key, name or input; nothing was queued).",
            ["kind", "outcome"],
            registry=self.registry,
        )


class _Guard:
    """Outermost middleware: counts every answer, and turns an unexpected error into a page."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = False

        async def watch(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            # The path only: query strings of /oauth/* hold codes, states and signatures.
            logger.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if not started:
                answer = page(500, "Internal error", "The gateway failed; the cause is in its log.")
                await answer(scope, receive, watch)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(route=label, status=str(status)).inc()


def _package_version() -> str:
    try:
        return version("automagik-spark-integrations")
    except PackageNotFoundError:
        return "0"


class _Endpoints:
    """The endpoints, bound to one gateway's settings, flows and metrics."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        metrics: GatewayMetrics,
        celery: Callable[[], Celery] | None = None,
        preparation: Preparation | None = None,
    ):
        self.settings = settings
        self.preparation = preparation
        self.sessions = sessions
        self.metrics = metrics
        self.flows = ConnectFlows(
            sessions,
            SecretBox(settings.secret_keys),
            Signer(settings.secret_keys),
            settings.public_url,
        )
        self.openapi = openapi_document(settings.public_url, _package_version())
        self.spark = SparkSource(
            settings, sessions, metrics.spark_runs, _package_version(), celery=celery
        )
        # One client app for /spark and webhooks: one producer pool, built once.
        self.webhooks = WebhookEndpoint(settings, sessions, self.spark.celery)
        self.console = Console(settings, sessions, self.spark.celery)

    def healthz(self, request: Request) -> Response:
        return json_answer({"ok": True})

    def readyz(self, request: Request) -> Response:
        ok, checks = readiness(self.settings, self.sessions, self.preparation)
        return json_answer({"ok": ok, "checks": checks}, 200 if ok else 503)

    def metrics_page(self, request: Request) -> Response:
        return Response(
            generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
        )

    def openapi_page(self, request: Request) -> Response:
        return json_answer(self.openapi)

    def authorize(self, request: Request) -> Response:
        connection_id = str(request.path_params["connection_id"])
        if request.method == "HEAD":
            # Link previewers and mail scanners send HEAD: the single-use link stays unused.
            return Response(status_code=200, headers={"Cache-Control": "no-store"})
        try:
            target = self.flows.authorize(connection_id, request.query_params)
        except Exception as exc:
            return self._refusal(exc)
        self.metrics.oauth_flows.labels(outcome="redirected").inc()
        return redirect(target)

    def callback(self, request: Request) -> Response:
        try:
            done = self.flows.callback(request.query_params)
        except Exception as exc:
            return self._refusal(exc)
        self.metrics.oauth_flows.labels(outcome="succeeded").inc()
        return page(
            200,
            "Connected",
            f"The connection {done.connection_name} ({done.connection_id}) is connected and "
            "active. You can close this window.",
        )

    def _refusal(self, exc: Exception) -> Response:
        """The page for an error of a flow step; unexpected errors go on to the guard."""
        if isinstance(exc, FlowRefusedError):
            self.metrics.oauth_flows.labels(outcome=exc.outcome).inc()
            return page(exc.status, exc.title, str(exc))
        if isinstance(exc, DBAPIError | StoreError):
            reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
            logger.error(
                "the store at %s is unreachable (%s)",
                hide_password(self.settings.database_url),
                type(reason).__name__,
            )
            return page(503, "Store unavailable", "The store cannot be reached; try again soon.")
        if isinstance(exc, NotFoundError):
            return page(404, "Not found", str(exc))
        if isinstance(exc, UsageError):
            return page(400, "Refused", str(exc))
        if isinstance(exc, ProviderError):
            return page(502, "Provider error", str(exc))
        if isinstance(exc, IntegrationError):
            logger.error("flow step failed: %s", exc)
            return page(500, "Failed", str(exc))
        raise exc


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    titles = {404: "Not found", 405: "Method not allowed"}
    answer = page(status, titles.get(status, "Error"), "There is nothing here for that request.")
    if isinstance(exc, HTTPException) and exc.headers:
        answer.headers.update(exc.headers)
    return answer


def create_app(
    settings: Settings,
    *,
    sessions: SessionFactory | None = None,
    celery: Callable[[], Celery] | None = None,
    preparation: Preparation | None = None,
) -> Starlette:
    """The gateway over ``settings``; ``sessions`` opens store transactions (default: its URL),
    ``celery`` builds the client app /spark and webhooks send tasks with (default: one over its
    broker), ``preparation`` is what must be brought up before /readyz passes."""
    metrics = GatewayMetrics()

    def default_sessions() -> AbstractContextManager[Session]:
        return session_scope(settings.database_url)

    endpoints = _Endpoints(settings, sessions or default_sessions, metrics, celery, preparation)
    # The whole fleet's domain metrics, read when /metrics is asked, beside the gateway's own.
    metrics.registry.register(FleetMetrics(settings, sessions or default_sessions))
    routes = [
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/metrics", endpoints.metrics_page, methods=["GET"]),
        Route("/openapi.json", endpoints.openapi_page, methods=["GET"]),
        Route("/oauth/callback", endpoints.callback, methods=["GET"]),
        Route("/oauth/{connection_id}/authorize", endpoints.authorize, methods=["GET"]),
        Route("/spark/health", endpoints.spark.health, methods=["GET"]),
        Route("/spark", endpoints.spark.root, methods=["GET"]),
        Route("/spark/", endpoints.spark.root, methods=["GET"]),
        Route("/spark/api/v1/agents", endpoints.spark.agents, methods=["GET"]),
        Route("/spark/api/v1/agent/{name}/run", endpoints.spark.run, methods=["POST"]),
        Route("/webhooks/{provider}/{connection_id}", endpoints.webhooks.receive, methods=["POST"]),
        Route("/console", endpoints.console.page, methods=["GET"]),
        Route(
            "/console/dead-letters/{letter_id}/replay", endpoints.console.replay, methods=["POST"]
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, metrics=metrics)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.metrics = metrics
    app.state.flows = endpoints.flows
    app.state.spark = endpoints.spark
    app.state.webhooks = endpoints.webhooks
    app.state.console = endpoints.console
    return app
