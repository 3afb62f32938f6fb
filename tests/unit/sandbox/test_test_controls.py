"""The controls tests drive the sandbox with: held requests, records changed on demand, a
lagging read replica, and an injected 429."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from spark_integrations.sandbox import SandboxOptions, SandboxServer
from tests.unit.sandbox.conftest import StartSandbox
from tests.unit.sandbox.helpers import API_KEY, stats, wait_for

ITEMS = "/v1/items"


def send(method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request, ignoring proxy variables."""
    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, url, timeout=kwargs.pop("timeout", 10), **kwargs)


def control(url: str, path: str, body: Any) -> requests.Response:
    return send("POST", f"{url}/_sandbox/{path}", json=body)


class Background:
    """One request sent from a thread of its own; its answer (or error) kept."""

    def __init__(self, method: str, url: str, **kwargs: Any) -> None:
        self.answer: requests.Response | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._send, args=(method, url), kwargs=kwargs)
        self._thread.start()

    def _send(self, method: str, url: str, **kwargs: Any) -> None:
        try:
            self.answer = send(method, url, timeout=30, **kwargs)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self) -> requests.Response:
        self._thread.join(timeout=30)
        assert self.error is None and self.answer is not None, self.error
        return self.answer


def test_held_api_requests_wait_until_released(sandbox: SandboxServer) -> None:
    url = sandbox.url
    assert control(url, "hold", {"scopes": ["api"]}).json() == {
        "ok": True,
        "scopes": ["api"],
        "held": 0,
    }
    headers = {"X-API-Key": API_KEY}
    first = Background("POST", url + "/v1/messages", json={"text": "held"}, headers=headers)
    second = Background("GET", url + ITEMS, headers=headers)
    wait_for(lambda: stats(url)["held"] == 2)
    # Held before anything happened: not counted, nothing created; control paths still answer.
    counters = stats(url)
    assert counters["requests"] == 0 and counters["messages_created"] == 0
    assert not first.done() and not second.done()
    # OAuth is another scope: not held.
    assert send("POST", url + "/oauth/token", data={}).status_code == 401  # answered

    released = control(url, "hold", {"scopes": []}).json()
    assert released["ok"] is True and released["scopes"] == []
    assert first.join().status_code == 201 and second.join().status_code == 200
    counters = stats(url)
    assert counters["held"] == 0 and counters["requests"] == 2
    assert counters["messages_created"] == 1


def test_held_token_requests_wait_and_api_requests_do_not(sandbox: SandboxServer) -> None:
    url = sandbox.url
    control(url, "hold", {"scopes": ["token"]})
    grant = Background(
        "POST",
        url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("sandbox", "sandbox-secret"),
    )
    wait_for(lambda: stats(url)["held"] == 1)
    assert stats(url)["client_credentials_grants"] == 0
    assert send("GET", url + ITEMS, headers={"X-API-Key": API_KEY}).status_code == 200
    control(url, "hold", {"scopes": []})
    assert grant.join().status_code == 200
    assert stats(url)["client_credentials_grants"] == 1


def test_stopping_the_sandbox_lets_held_requests_go(start_sandbox: StartSandbox) -> None:
    server = start_sandbox()
    control(server.url, "hold", {"scopes": ["api"]})
    held = Background("GET", server.url + ITEMS, headers={"X-API-Key": API_KEY})
    wait_for(lambda: stats(server.url)["held"] == 1)
    server.stop()
    held._thread.join(timeout=30)
    assert held.done()


@pytest.mark.parametrize(
    "body",
    [{}, {"scopes": "api"}, {"scopes": ["api", "everything"]}, {"scopes": [1]}],
)
def test_bad_hold_requests_are_400(sandbox: SandboxServer, body: dict[str, Any]) -> None:
    answer = control(sandbox.url, "hold", body)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


def versions(url: str) -> dict[str, int]:
    """Every item's version, read page by page from the cursor listing."""
    found: dict[str, int] = {}
    cursor: str | None = None
    with requests.Session() as http:
        http.trust_env = False
        http.headers["X-API-Key"] = API_KEY
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            body = http.get(url + ITEMS, params=params, timeout=10).json()
            found.update({r["id"]: r["version"] for r in body["data"]})
            cursor = body["next_cursor"]
            if not cursor:
                return found


def test_update_changes_records_now(sandbox: SandboxServer) -> None:
    before = versions(sandbox.url)
    answer = control(sandbox.url, "update", {"count": 20})
    assert answer.json() == {"ok": True, "updated": 20}
    after = versions(sandbox.url)
    changed = {k for k in before if after[k] != before[k]}
    assert 1 <= len(changed) <= 20 and all(after[k] > before[k] for k in changed)
    assert stats(sandbox.url)["items_updated"] == 20


@pytest.mark.parametrize("count", [-1, "3", 1.5, True, 2_000_000])
def test_bad_update_counts_are_400(sandbox: SandboxServer, count: object) -> None:
    assert control(sandbox.url, "update", {"count": count}).status_code == 400


def test_a_replica_serves_the_records_as_they_were_at_its_snapshot(
    sandbox: SandboxServer,
) -> None:
    url = sandbox.url
    assert control(url, "replica", {"reads": "replica"}).status_code == 400  # no snapshot yet
    old = versions(url)
    assert control(url, "replica", {"snapshot": True}).json()["ok"] is True
    control(url, "update", {"count": 30})
    new = versions(url)
    assert new != old
    control(url, "replica", {"reads": "replica"})
    assert versions(url) == old
    one = next(k for k in old if new[k] != old[k])
    answer = send("GET", f"{url}{ITEMS}/{one}", headers={"X-API-Key": API_KEY})
    assert answer.json()["version"] == old[one]
    control(url, "replica", {"reads": "primary"})
    assert versions(url) == new


@pytest.mark.parametrize("body", [{"snapshot": "yes"}, {"reads": "secondary"}, []])
def test_bad_replica_requests_are_400(sandbox: SandboxServer, body: Any) -> None:
    assert control(sandbox.url, "replica", body).status_code == 400


def test_a_429_fault_is_injected_only_when_named(start_sandbox: StartSandbox) -> None:
    assert "429" not in SandboxOptions().fault_kinds
    server = start_sandbox(fault_rate=1.0, fault_kinds=("429",))
    answer = send("GET", server.url + ITEMS, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["error"] == "rate_limited"
    counters = stats(server.url)
    assert counters["faults_injected"] == 1 and counters["rate_limited"] == 0
    switched = control(server.url, "faults", {"rate": 1, "kinds": ["429", "500"]})
    assert switched.json()["kinds"] == ["429", "500"]


def test_a_refresh_while_the_token_has_most_of_its_life_left_counts_as_early(
    start_sandbox: StartSandbox,
) -> None:
    from tests.unit.sandbox.test_oauth import authorize, exchange, refresh, s256

    server = start_sandbox(token_ttl=3600)
    with requests.Session() as http:
        http.trust_env = False
        verifier = "v" * 50
        code = authorize(http, server.url, s256(verifier))["code"][0]
        first = exchange(http, server.url, code, verifier).json()
        second = refresh(http, server.url, first["refresh_token"]).json()
        assert stats(server.url)["early_refreshes"] == 1  # an hour left: early
        control(server.url, "revoke", {"all": True})
        refresh(http, server.url, second["refresh_token"]).raise_for_status()
    counters = stats(server.url)
    assert counters["token_refreshes"] == 2
    assert counters["early_refreshes"] == 1  # a revoked token's refresh is not early
