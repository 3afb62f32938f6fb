"""Injected faults: each kind, before or after the effect, and never on OAuth or control paths."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from spark_integrations.sandbox import SandboxServer
from tests.unit.sandbox.conftest import StartSandbox
from tests.unit.sandbox.helpers import stats

ITEMS = "/v1/items"


def test_dropped_connection(start_sandbox: StartSandbox, api: requests.Session) -> None:
    srv = start_sandbox(fault_rate=1.0, fault_kinds=("drop",))
    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            api.get(srv.url + ITEMS, timeout=10)
    assert stats(srv.url)["faults_injected"] == 3


def test_malformed_json(start_sandbox: StartSandbox, api: requests.Session) -> None:
    srv = start_sandbox(fault_rate=1.0, fault_kinds=("malformed",))
    with api.get(srv.url + ITEMS) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/json"
        with pytest.raises(requests.JSONDecodeError):
            answer.json()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors(start_sandbox: StartSandbox, api: requests.Session, status: int) -> None:
    srv = start_sandbox(fault_rate=1.0, fault_kinds=(str(status),))
    content_types = set()
    for _ in range(12):
        with api.get(srv.url + ITEMS) as answer:
            assert answer.status_code == status
            content_types.add(answer.headers["Content-Type"].split(";")[0])
            if "Retry-After" in answer.headers:
                assert status == 503 and answer.headers["Retry-After"] == "1"
    # Both JSON and HTML bodies show up (seeded generator, 12 draws).
    assert content_types == {"application/json", "text/html"}


def test_slow_answer_is_still_correct(start_sandbox: StartSandbox, api: requests.Session) -> None:
    srv = start_sandbox(fault_rate=1.0, fault_kinds=("slow",), slow_seconds=0.05)
    with api.get(srv.url + ITEMS, params={"limit": "5"}) as answer:
        assert answer.status_code == 200 and len(answer.json()["data"]) == 5
    assert stats(srv.url)["faults_injected"] == 1


def test_before_effect_faults_create_nothing(
    start_sandbox: StartSandbox, api: requests.Session
) -> None:
    srv = start_sandbox(fault_rate=1.0, fault_kinds=("503", "malformed"))
    for _ in range(10):
        with api.post(srv.url + "/v1/messages", json={"text": "x"}) as answer:
            assert answer.status_code in (200, 503)
    assert stats(srv.url)["messages_created"] == 0


def test_after_effect_faults_create_the_message_and_lose_the_answer(
    start_sandbox: StartSandbox, api: requests.Session
) -> None:
    srv = start_sandbox(fault_rate=1.0, fault_kinds=("drop",))
    attempts = 60
    for n in range(attempts):
        with pytest.raises(requests.ConnectionError):
            api.post(
                srv.url + "/v1/messages",
                json={"text": f"m{n}"},
                headers={"Idempotency-Key": f"k{n}"},
                timeout=10,
            )
    counters = stats(srv.url)
    assert counters["faults_injected"] == attempts
    # About 20% strike after the effect: each of those created its message.
    assert 0 < counters["messages_created"] < attempts
    with api.get(srv.url + "/_sandbox/messages") as answer:
        created: list[dict[str, Any]] = answer.json()
    assert len(created) == counters["messages_created"]

    # The client retries with the same key once faults stop: the stored answer is replayed.
    with api.post(srv.url + "/_sandbox/faults", json={"rate": 0}) as answer:
        assert answer.json() == {"ok": True, "rate": 0, "kinds": ["drop"]}
    lost = created[0]
    with api.post(
        srv.url + "/v1/messages",
        json={"text": lost["text"]},
        headers={"Idempotency-Key": lost["idempotency_key"]},
    ) as answer:
        assert answer.status_code == 201
        assert answer.headers["Idempotent-Replayed"] == "true"
        assert answer.json()["id"] == lost["id"]
    assert stats(srv.url)["messages_created"] == len(created)


def test_after_effect_server_errors(start_sandbox: StartSandbox, api: requests.Session) -> None:
    srv = start_sandbox(fault_rate=1.0, fault_kinds=("500", "502"))
    for n in range(40):
        with api.post(srv.url + "/v1/messages", json={"text": f"m{n}"}) as answer:
            assert answer.status_code in (500, 502)
    assert 0 < stats(srv.url)["messages_created"] < 40


def test_control_and_oauth_paths_are_never_faulted(
    start_sandbox: StartSandbox, http: requests.Session
) -> None:
    srv = start_sandbox(fault_rate=1.0)
    for _ in range(10):
        with http.get(srv.url + "/_sandbox/stats") as answer:
            assert answer.status_code == 200
        with http.post(
            srv.url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("sandbox", "sandbox-secret"),
        ) as answer:
            assert answer.status_code == 200
    assert stats(srv.url)["faults_injected"] == 0


def test_fault_settings_change_at_run_time(sandbox: SandboxServer, api: requests.Session) -> None:
    url = sandbox.url + "/_sandbox/faults"
    with api.post(url, json={"rate": 1, "kinds": ["502"]}) as answer:
        assert answer.status_code == 200
    with api.get(sandbox.url + ITEMS) as answer:
        assert answer.status_code == 502
    for bad in ({"rate": 2}, {"rate": "x"}, {"kinds": ["boom"]}, {"kinds": []}, [1]):
        with api.post(url, json=bad) as answer:
            assert answer.status_code == 400
