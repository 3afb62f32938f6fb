"""GitHub end to end: real workers against the loopback GitHub emulator (tests/emulators).

The emulator enforces a real primary limit (a few requests per short window) and sends GitHub's
``x-ratelimit-*`` headers on every answer. A sync of a repository's issues reads every page
and the fleet waits for ``x-ratelimit-reset`` whenever an answer says ``x-ratelimit-remaining:
0``: not one request meets the limit. Actions run through ``integrations.call`` with one
injected error of each class: secondary limits (403 with ``retry-after``, 403 with a reset time
only: waited, then sent again), a 502 (retried on a read; on a create, which GitHub cannot
deduplicate, the outcome is unknown and nothing is resent), a 401 on a personal access token
(refused: nothing new to try), a 403 that is no limit and a 404 (fatal at once). A GitHub App
connection obtains its installation token once, reuses it, obtains a new one when it expires
and after a 401, under a GitHub Enterprise Server base path.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.emulators.github import GitHub
from tests.integration.fleet import add_connection, dead_letters, wait_for
from tests.integration.providers import (
    add_sync,
    call,
    gap,
    logged,
    start_emulator,
    start_fleet,
)
from tests.integration.test_syncs import cursor_of, run_to_end, stored

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

TOKEN = "ghp_" + uuid.uuid4().hex
OWNER, REPO = "octocat", "Hello-World"
WHERE = {"owner": OWNER, "repo": REPO}


def add_github(env: dict[str, str], config: dict[str, Any], *secrets: str) -> str:
    name = f"gh-{uuid.uuid4().hex[:6]}"
    return add_connection(env, name, config, *secrets, provider="github")


def add_issues_sync(env: dict[str, str], connection_id: str) -> str:
    answer = add_sync(env, connection_id, "issues", {"owner": OWNER, "repo": REPO})
    assert answer["params"] == WHERE
    return str(answer["id"])


def test_a_sync_and_actions_through_a_worker_meet_no_limit(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    # Three requests per two-second window: the sync's five pages and the calls after it
    # outrun it unless the fleet waits for each reset, as the headers tell it to.
    emu = start_emulator(GitHub(tokens=(TOKEN,), limit=3, window=2.0), processes)
    numbers = emu.seed_issues(OWNER, REPO, 450, pulls_every=10)
    cid = add_github(redis_env, {"base_url": emu.url, "rate_limit": 50}, f"token={TOKEN}")
    sync_id = add_issues_sync(redis_env, cid)
    workers, app = start_fleet(redis_env, short_tmp, processes, concurrency=2)

    first = run_to_end(app, sync_id)
    assert (first["records"], first["pages"]) == (450, 5), first
    records = stored(redis_env, sync_id)
    assert sorted(r["number"] for r in records.values()) == numbers
    assert sum("pull_request" in r for r in records.values()) == 45
    newest = max(r["updated_at"] for r in records.values())
    assert cursor_of(redis_env, sync_id) == newest
    listed = emu.recorded("list_issues")
    assert listed[0]["query"] == {
        "state": "all", "sort": "updated", "direction": "desc", "per_page": "100"}  # fmt: skip
    assert listed[1]["path"].startswith("/repositories/"), "the Link header was followed"

    # Two issues change: the next run reads from the cursor (since, inclusive) and gets them.
    emu.touch(OWNER, REPO, numbers[3])
    emu.touch(OWNER, REPO, numbers[7])
    second = run_to_end(app, sync_id)
    assert second["records"] == 2 and second["pages"] == 1, second
    assert emu.recorded("list_issues")[-1]["query"]["since"] == newest

    # Actions, then one injected error of each class.
    ok, answer = call(
        app, cid, "create_issue", {**WHERE, "title": "Found a bug", "labels": ["bug"]}
    )
    assert ok and answer["attempts"] == 1, answer
    number = answer["data"]["number"]
    assert emu.issues(OWNER, REPO)[-1]["labels"] == ["bug"]
    ok, answer = call(
        app, cid, "create_comment", {**WHERE, "issue_number": number, "body": "Me too"}
    )
    assert ok and answer["data"]["body"] == "Me too", answer
    ok, answer = call(app, cid, "add_labels", {**WHERE, "issue_number": number, "labels": ["x"]})
    assert ok and [label["name"] for label in answer["data"]] == ["bug", "x"], answer

    emu.inject("secondary:1", route="add_labels")
    ok, answer = call(app, cid, "add_labels", {**WHERE, "issue_number": number, "labels": ["y"]})
    assert ok and answer["attempts"] == 2, answer
    assert gap(emu, "add_labels") >= 0.9, "the retry waited for retry-after"

    emu.inject("secondary_reset:2", route="get_issue")
    ok, answer = call(app, cid, "get_issue", {**WHERE, "issue_number": number})
    assert ok and answer["attempts"] == 2, answer
    assert gap(emu, "get_issue") >= 0.9, "the retry waited for x-ratelimit-reset"

    emu.inject("server_error", route="get_issue")
    ok, answer = call(app, cid, "get_issue", {**WHERE, "issue_number": number})
    assert ok and answer["attempts"] == 2, answer

    created = len(emu.issues(OWNER, REPO))
    emu.inject("server_error", route="create_issue")
    ok, error = call(app, cid, "create_issue", {**WHERE, "title": "maybe"})
    assert not ok and "outcome_unknown" in str(error), error
    assert len(emu.recorded("create_issue")) == 2, "a create GitHub cannot deduplicate: not resent"
    assert len(emu.issues(OWNER, REPO)) == created

    letters = len(dead_letters(redis_env))
    for kind, said in (("forbidden", "Resource not accessible"), ("not_found", "Not Found")):
        before = len(emu.recorded("update_issue"))
        emu.inject(kind, route="update_issue")
        ok, error = call(app, cid, "close_issue", {**WHERE, "issue_number": number})
        assert not ok and said in str(error), error
        assert len(emu.recorded("update_issue")) == before + 1, "fatal: not retried"
    ok, answer = call(app, cid, "close_issue", {**WHERE, "issue_number": number})
    assert ok and answer["data"]["state"] == "closed", answer

    emu.inject("bad_credentials", route="get_issue")
    ok, error = call(app, cid, "get_issue", {**WHERE, "issue_number": number})
    assert not ok and "credentials" in str(error), error
    assert len(dead_letters(redis_env)) == letters + 3

    # The fleet waited for every reset the headers announced: GitHub refused nothing.
    stats = emu.stats()
    assert stats.get("limit_exceeded", 0) == 0, stats
    assert stats["windows_spent"] >= 2, stats  # answers saying remaining 0 were waited out
    assert not logged(workers, TOKEN), "the token is in a worker's log"


def _private_key(folder: Path) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = folder / "app.pem"
    path.write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, public.decode()


def test_a_github_app_installation_token_obtained_reused_and_renewed(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    pem, public = _private_key(short_tmp)
    ttl = 6.0
    emu = GitHub(
        tokens=(),
        base_path="/api/v3",
        apps={"369": public},
        installations={1296269: "369"},
        token_ttl=ttl,
    )
    start_emulator(emu, processes)
    emu.seed_issues(OWNER, REPO, 3)
    config = {"base_url": emu.url + "/api/v3", "app_id": "369", "installation_id": "1296269"}
    cid = add_github(redis_env, config, f"private_key=@{pem}")
    sync_id = add_issues_sync(redis_env, cid)
    workers, app = start_fleet(redis_env, short_tmp, processes, concurrency=1)

    # One token for the sync and the calls after it.
    assert run_to_end(app, sync_id)["records"] == 3
    for number in (1, 2):
        ok, answer = call(app, cid, "get_issue", {**WHERE, "issue_number": number})
        assert ok, answer
    assert emu.stats()["installation_tokens"] == 1
    exchange = emu.recorded("access_token")[0]
    assert exchange["path"] == "/api/v3/app/installations/1296269/access_tokens"
    assert exchange["headers"]["authorization"].startswith("Bearer eyJ"), "the app's JWT"
    api = [r for r in emu.recorded() if r["route"] != "access_token"]
    tokens = {r["headers"]["authorization"] for r in api}
    assert len(tokens) == 1 and tokens.pop().startswith("Bearer ghs_")

    # Past its expiry a new token is obtained (before the old one is refused, or after).
    started = time.time()
    wait_for(lambda: time.time() > started + ttl, ttl + 5, "the installation token to expire")
    ok, answer = call(app, cid, "create_comment", {**WHERE, "issue_number": 1, "body": "later"})
    assert ok, answer
    assert emu.stats()["installation_tokens"] == 2

    # A 401: the token is dropped and the request sent again with a new one.
    emu.inject("bad_credentials", route="get_issue")
    ok, answer = call(app, cid, "get_issue", {**WHERE, "issue_number": 1})
    assert ok, answer
    assert emu.stats()["installation_tokens"] == 3
    last_two = [r["headers"]["authorization"] for r in emu.recorded("get_issue")[-2:]]
    assert last_two[0] != last_two[1]
    secrets = [t for t in emu.tokens if t.startswith("ghs_")]
    secrets.append(pem.read_text().splitlines()[1])  # a line of the private key
    assert not logged(workers, *secrets), "a secret in a log"
