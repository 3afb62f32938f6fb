"""The gateway's service endpoints and its answers when things go wrong."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from spark_integrations.gateway import ConnectFlows, create_app
from spark_integrations.gateway.health import FAILED, PASSED
from spark_integrations.settings import Settings
from tests.unit.gateway.conftest import PUBLIC_URL, new_connection


def test_healthz(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"ok": True}


def test_openapi_lists_the_endpoints(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": PUBLIC_URL}]
    assert set(doc["paths"]) == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/oauth/{connection_id}/authorize",
        "/oauth/callback",
        "/spark",
        "/spark/",
        "/spark/health",
        "/spark/api/v1/agents",
        "/spark/api/v1/agent/{name}/run",
        "/webhooks/{provider}/{connection_id}",
        "/console",
        "/console/dead-letters/{letter_id}/replay",
    }


def test_metrics_count_requests_by_route_and_flows_by_outcome(
    client: TestClient, gateway_settings: Settings
) -> None:
    client.get("/healthz")
    client.get("/healthz")
    client.get("/oauth/callback?state=forged.state")
    client.get("/no/such/page")
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'spark_integrations_gateway_requests_total{route="/healthz",status="200"} 2.0' in text
    assert (
        'spark_integrations_gateway_requests_total{route="/oauth/callback",status="400"} 1.0'
        in text
    )
    assert 'spark_integrations_gateway_requests_total{route="unmatched",status="404"} 1.0' in text
    assert 'spark_integrations_oauth_flows_total{outcome="refused"} 1.0' in text
    # Two apps in one process keep their own counts (a registry each).
    with TestClient(create_app(gateway_settings)) as other:
        assert "gateway_requests_total{" not in other.get("/metrics").text


def test_readyz_names_the_failing_check_and_nothing_internal(
    gateway_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Public: the check's name and its outcome; no host, user, database, URL nor password.
    The gateway's log says why, with the URL masked."""
    broker = "redis://fleetuser:s3cr3t-pw@broker-host.internal:1/0?password=q-pw"
    s = dataclasses.replace(gateway_settings, broker_url=broker)
    with caplog.at_level(logging.WARNING, logger="gateway"), TestClient(create_app(s)) as c:
        answer = c.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["ok"] is False
    assert body["checks"]["broker"] == {"ok": False, "detail": FAILED}
    assert body["checks"]["store"] == {"ok": True, "detail": PASSED}
    store_url = urlsplit(gateway_settings.database_url)
    for internal in ("s3cr3t-pw", "q-pw", "fleetuser", "broker-host", "redis://", "127.0.0.1",
                     store_url.path.rsplit("/", 1)[-1], "sqlite"):  # fmt: skip
        assert internal not in answer.text
    assert "broker failed" in caplog.text and "broker-host.internal" in caplog.text
    assert "s3cr3t-pw" not in caplog.text and "q-pw" not in caplog.text


@pytest.mark.server
def test_readyz_ok_on_a_reachable_broker_and_store(
    gateway_settings: Settings, redis_url: str
) -> None:
    s = dataclasses.replace(gateway_settings, broker_url=redis_url)
    with TestClient(create_app(s)) as test_client:
        answer = test_client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True


def _unreachable_store() -> Iterator[Session]:
    raise OperationalError("SELECT 1", {}, Exception("connection refused"))
    yield  # pragma: no cover


def test_store_down_answers_503(gateway_settings: Settings, flows: ConnectFlows) -> None:
    started = flows.start(new_connection(gateway_settings, "down"))
    app = create_app(gateway_settings, sessions=contextmanager(_unreachable_store))
    with TestClient(app, follow_redirects=False) as test_client:
        parts = urlsplit(started.url)
        answer = test_client.get(f"{parts.path}?{parts.query}")
        assert answer.status_code == 503
        assert "Store unavailable" in answer.text
        callback = test_client.get("/oauth/callback?state=" + flows.signer.new_state())
        assert callback.status_code == 503
        ready = test_client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"]["ok"] is False


def test_unexpected_error_is_a_500_page_without_secrets_in_the_log(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(params: object) -> None:
        raise RuntimeError("kaboom in the flow")

    monkeypatch.setattr(client.app.state.flows, "callback", boom)  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR, logger="gateway"):
        answer = client.get("/oauth/callback?code=SECRET-CODE-123&state=SECRET-STATE")
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "kaboom" not in answer.text and "Traceback" not in answer.text
    assert "GET /oauth/callback" in caplog.text
    assert "SECRET-CODE-123" not in caplog.text and "SECRET-STATE" not in caplog.text


def test_unknown_routes_and_methods_answer_pages(client: TestClient) -> None:
    missing = client.get("/oauth/x/y/z?<script>=1")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "<script>" not in missing.text
    assert client.post("/healthz").status_code == 405
    assert client.get("/oauth/%00/authorize").status_code == 400
