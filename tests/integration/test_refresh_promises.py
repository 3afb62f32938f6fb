"""A refresh whose answer is lost turns the connection ``needs_reauth`` (real workers, sandbox).

The sandbox holds the token request (``POST /_sandbox/hold`` ``{"scopes": ["token"]}``) past the
fleet's read timeout, then lets it go: the provider rotates the refresh token, and its answer
reaches nobody. The fleet cannot know whether the rotation happened, so it must not present the
refresh token again (a rotating provider would revoke the family): the connection turns
``needs_reauth``, saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet import (
    add_connection,
    client_app,
    dead_letters,
    outcome,
    send_call,
    start_sandbox,
    start_workers,
    wait_for,
)
from tests.integration.oauth_helpers import (
    CLIENT,
    CLIENT_SECRET,
    connect_directly,
    connection_row,
    expire_in_store,
    stored_token,
)

pytestmark = pytest.mark.server


def says_needs_reauth(text: str) -> bool:
    return "re-authorisation" in text or "needs_reauth" in text


def test_a_refresh_whose_answer_is_lost_turns_the_connection_needs_reauth(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    box = start_sandbox(redis_env, short_tmp, processes, "--rate-limit=1000")
    config = {"base_url": box.url, **CLIENT, "rate_limit": 1000}
    cid = add_connection(redis_env, "lost-answer", config, CLIENT_SECRET)
    connect_directly(redis_env, cid, box.url)
    start_workers(redis_env, short_tmp, processes, concurrency=2)
    app = client_app(redis_env)
    version = stored_token(redis_env, cid).version  # type: ignore[union-attr]
    expire_in_store(redis_env, cid)  # the next call must refresh, with no sleep here

    box.hold("token")
    call = send_call(app, cid, "create_message", {"text": "lost"})
    wait_for(lambda: box.stats()["held"] == 1, 60, "the refresh request to reach the provider")
    # The fleet's read timeout passes while the request is held: the answer is lost.
    ok, error = outcome(call, timeout=120)
    box.release()
    wait_for(lambda: box.stats()["token_refreshes"] == 1, 30, "the provider to rotate the token")

    assert not ok and says_needs_reauth(error), error
    status, reason = connection_row(redis_env, cid)
    assert status == "needs_reauth"
    assert reason is not None and "may have reached the provider" in reason, reason
    token = stored_token(redis_env, cid)
    assert token is not None and token.version == version  # the lost answer was never stored
    # Nothing presents the used refresh token again: later calls end at once, no request sent.
    again = outcome(send_call(app, cid, "create_message", {"text": "after"}), timeout=60)
    assert not again[0] and says_needs_reauth(again[1]), again
    stats = box.stats()
    assert stats["invalid_grants"] == 0 and stats["token_refreshes"] == 1
    assert stats["requests"] == 0 and stats["messages_created"] == 0
    letters = [d for d in dead_letters(redis_env) if d["connection_id"] == cid]
    assert len(letters) == 2 and all(says_needs_reauth(d["error"]) for d in letters)
