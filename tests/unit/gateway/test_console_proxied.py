"""Embedded mode's console and what a proxy or tunnel on the same machine relays.

A tunnel (ngrok, cloudflared) or a reverse proxy on the gateway's machine connects from
loopback, so the peer address alone would let anyone who reaches the tunnel in: the console
refuses what carries a forwarding header, and the host of an https public URL (only a TLS proxy
in front answers there; the gateway itself serves http).
"""

from __future__ import annotations

import dataclasses

import pytest
from starlette.testclient import TestClient

from spark_integrations.gateway import create_app
from spark_integrations.settings import Settings
from tests.unit.gateway.test_console_page import LOOPBACK, page_text

TUNNEL = "https://abc123.tunnel.example"


def _client(s: Settings, base_url: str) -> TestClient:
    return TestClient(create_app(s), base_url=base_url, client=LOOPBACK, follow_redirects=False)


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9;proto=https"},
        {"X-Real-IP": "203.0.113.9"},
        {"X-Forwarded-Host": "abc123.tunnel.example"},
    ],
)
def test_a_relayed_request_is_refused_though_it_comes_from_loopback(
    gateway_settings: Settings, header: dict[str, str]
) -> None:
    with _client(gateway_settings, "http://127.0.0.1:8130") as client:
        relayed = client.get("/console", headers=header)
        replay = client.post("/console/dead-letters/x/replay", headers=header)
        own = client.get("/console")
    assert relayed.status_code == 403
    assert "proxy or tunnel" in page_text(relayed.text)
    assert '<section id="connections">' not in relayed.text
    assert replay.status_code == 403
    assert own.status_code == 200


def test_the_host_of_an_https_public_url_is_a_proxys_not_this_machines(
    gateway_settings: Settings,
) -> None:
    """A tunnel that adds no forwarding header still names the public host it answers."""
    s = dataclasses.replace(gateway_settings, public_url=TUNNEL)
    with _client(s, TUNNEL) as client:
        through_tunnel = client.get("/console")
        local = client.get("/console", headers={"Host": "localhost:8130"})
    assert through_tunnel.status_code == 403
    assert local.status_code == 200


def test_the_host_of_an_http_public_url_is_still_accepted(gateway_settings: Settings) -> None:
    with _client(gateway_settings, gateway_settings.public_url) as client:
        assert client.get("/console").status_code == 200
