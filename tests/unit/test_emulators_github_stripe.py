"""The GitHub and Stripe emulators behave as their providers document, read with a plain HTTP
client (no fleet code): what the end-to-end tests rely on."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.emulators.github import GitHub
from tests.emulators.stripe import Stripe


@pytest.fixture
def github() -> Iterator[GitHub]:
    with GitHub(tokens=("ghp_t",), limit=4, window=30, base_path="/api/v3") as emu:
        yield emu


def test_github_lists_by_page_with_link_headers_naming_the_repository_by_id(github: GitHub) -> None:
    github.seed_issues("o", "r", 5, pulls_every=5)
    http = requests.Session()
    http.headers["Authorization"] = "token ghp_t"
    query = {"sort": "updated", "direction": "desc", "per_page": "2", "state": "all"}
    first = http.get(f"{github.url}/api/v3/repos/o/r/issues", params=query, timeout=5)
    assert [i["number"] for i in first.json()] == [5, 4]
    assert "pull_request" in first.json()[0]
    following = first.links["next"]["url"]
    assert "/api/v3/repositories/1300192/issues?" in following and "page=2" in following
    second = http.get(following, timeout=5)
    assert [i["number"] for i in second.json()] == [3, 2]
    assert int(second.headers["x-ratelimit-remaining"]) == 2
    since = {"since": "2011-04-22T13:35:48Z", "per_page": "100"}
    later = http.get(f"{github.url}/api/v3/repos/o/r/issues", params=since, timeout=5)
    assert [i["number"] for i in later.json()] == [5, 4, 3]  # updated since, newest created first
    spent = http.get(f"{github.url}/api/v3/repos/o/r/pulls", timeout=5)
    assert spent.headers["x-ratelimit-remaining"] == "0"
    refused = http.get(f"{github.url}/api/v3/repos/o/r/pulls", timeout=5)
    assert refused.status_code == 403 and refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()
    assert github.stats()["limit_exceeded"] == 1


def test_github_app_tokens_from_a_jwt_expire() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with GitHub(apps={"369": public.decode()}, installations={7: "369"}, token_ttl=1) as emu:
        emu.add_repo("o", "r")
        url = f"{emu.url}/app/installations/7/access_tokens"
        now = int(time.time())
        too_long = jwt.encode({"iss": "369", "iat": now, "exp": now + 3600}, key, "RS256")
        assert (
            requests.post(url, headers={"Authorization": f"Bearer {too_long}"}).status_code == 401
        )
        good = jwt.encode({"iss": "369", "iat": now - 30, "exp": now + 540}, key, "RS256")
        made = requests.post(url, headers={"Authorization": f"Bearer {good}"}, timeout=5)
        assert made.status_code == 201 and made.json()["token"].startswith("ghs_")
        headers = {"Authorization": f"Bearer {made.json()['token']}"}
        assert requests.get(f"{emu.url}/repos/o/r/issues", headers=headers).status_code == 200
        deadline = time.monotonic() + 5
        while requests.get(f"{emu.url}/repos/o/r/issues", headers=headers).status_code == 200:
            assert time.monotonic() < deadline, "the installation token never expired"
            time.sleep(0.1)


def test_stripe_lists_newest_first_and_replays_idempotent_creates() -> None:
    with Stripe(keys={"sk_test_k": None}) as emu:
        ids = emu.seed("customer", 5, start=1_700_000_000)
        http = requests.Session()
        http.auth = ("sk_test_k", "")
        page = http.get(f"{emu.url}/v1/customers", params={"limit": 2}, timeout=5).json()
        assert page["object"] == "list" and page["has_more"] is True
        assert [c["id"] for c in page["data"]] == [ids[4], ids[3]]
        rest = http.get(
            f"{emu.url}/v1/customers",
            params={"limit": 10, "starting_after": ids[3], "created[gte]": 1_700_000_001},
            timeout=5,
        ).json()
        assert [c["id"] for c in rest["data"]] == [ids[2], ids[1]] and rest["has_more"] is False

        body = {"amount": "2000", "currency": "usd", "metadata[order_id]": "6735"}
        keyed = {"Idempotency-Key": "k-1"}
        first = http.post(f"{emu.url}/v1/payment_intents", data=body, headers=keyed, timeout=5)
        again = http.post(f"{emu.url}/v1/payment_intents", data=body, headers=keyed, timeout=5)
        assert first.json()["metadata"] == {"order_id": "6735"}
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        other = http.post(
            f"{emu.url}/v1/payment_intents", data={**body, "amount": "1"}, headers=keyed
        )
        assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
        assert emu.count("payment_intent") == 1
        missing = http.post(f"{emu.url}/v1/payment_intents", data={"currency": "usd"}, timeout=5)
        assert missing.json()["error"]["code"] == "parameter_missing"
        assert requests.get(f"{emu.url}/v1/customers", timeout=5).status_code == 401
