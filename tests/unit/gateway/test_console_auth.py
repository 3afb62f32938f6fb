"""Who may open the console, and the one write: replaying a dead letter, guarded against CSRF.

Replays go through a real broker (this machine's Redis): what the console sends is read back
from the queue's list, so "replayed once" counts the messages that really left.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from starlette.testclient import TestClient

from spark_integrations.constants import QUEUE_CALLS
from spark_integrations.coordination import IdempotencyStore
from spark_integrations.gateway import create_app
from spark_integrations.gateway.console import FLASH_COOKIE
from spark_integrations.gateway.console_auth import CSRF_TTL
from spark_integrations.settings import Settings
from spark_integrations.store import DeadLetter, session_scope
from tests.unit.gateway.conftest import PUBLIC_URL, flip_last
from tests.unit.gateway.test_console_page import (
    LOOPBACK,
    Filled,
    hidden_fields,
    loopback_client,
    page_text,
    server_settings,
)
from tests.unit.gateway.test_console_page import broker as broker  # fixtures
from tests.unit.gateway.test_console_page import filled as filled
from tests.unit.gateway.test_console_page import store_settings as store_settings

BASIC = ("ops", "correct-horse")
TOKEN = "console-token-" + "x" * 32
SAME_ORIGIN = {"Origin": PUBLIC_URL}


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def client_of(s: Settings, **kwargs: Any) -> TestClient:
    return TestClient(create_app(s), base_url=PUBLIC_URL, follow_redirects=False, **kwargs)


# -- embedded mode: loopback only --------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.8.9.10"])
def test_embedded_mode_answers_loopback_clients_without_credentials(
    gateway_settings: Settings, host: str
) -> None:
    with client_of(gateway_settings, client=(host, 40000)) as client:
        answer = client.get("/console")
    assert answer.status_code == 200
    assert "spark-integrations console" in page_text(answer.text)


@pytest.mark.parametrize("host", ["192.0.2.7", "10.0.0.1", "2001:db8::1", "testclient"])
def test_embedded_mode_refuses_other_clients(gateway_settings: Settings, host: str) -> None:
    with client_of(gateway_settings, client=(host, 40000)) as client:
        answer = client.get("/console", headers=BEARER)
    assert answer.status_code == 403
    assert "this machine's own clients only" in page_text(answer.text)
    assert '<section id="connections">' not in answer.text


def test_embedded_mode_refuses_a_host_name_rebound_to_loopback(gateway_settings: Settings) -> None:
    """A site whose name resolves to 127.0.0.1 (DNS rebinding) cannot read the console."""
    with client_of(gateway_settings, client=LOOPBACK) as client:
        evil = client.get("/console", headers={"Host": "evil.example:8130"})
        local = client.get("/console", headers={"Host": "localhost:8130"})
    assert evil.status_code == 403 and "127.0.0.1, localhost" in page_text(evil.text)
    assert local.status_code == 200


# -- server mode: Flower's credentials or the console token ------------------------------------


def test_server_mode_takes_basic_or_bearer_and_refuses_the_rest(gateway_settings: Settings) -> None:
    s = server_settings(gateway_settings, console_token=TOKEN)
    with client_of(s, client=LOOPBACK) as client:
        assert client.get("/console", auth=BASIC).status_code == 200
        assert client.get("/console", headers=BEARER).status_code == 200
        assert (
            client.get("/console", headers={"Authorization": f"bearer  {TOKEN} "}).status_code
            == 200
        )
        refused = [
            client.get("/console"),  # loopback is no credential in server mode
            client.get("/console", auth=("ops", "wrong")),
            client.get("/console", auth=("other", "correct-horse")),
            client.get("/console", headers=basic("ops", "correct-horse2")),
            client.get("/console", headers={"Authorization": "Basic !!!not-base64"}),
            client.get("/console", headers={"Authorization": "Basic "}),
            client.get("/console", headers={"Authorization": f"Bearer {flip_last(TOKEN)}"}),
            client.get("/console", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}),
            client.get("/console", headers={"Authorization": f"Token {TOKEN}"}),
            client.get("/console", headers={"Authorization": "Basic é".encode("latin-1")}),
            client.get("/console", headers={"Authorization": "Bearer é".encode("latin-1")}),
        ]
    for answer in refused:
        assert answer.status_code == 401
        assert answer.headers.get_list("www-authenticate") == [
            'Basic realm="spark-integrations console", charset="UTF-8"',
            'Bearer realm="spark-integrations console"',
        ]
        assert '<section id="connections">' not in answer.text
        assert answer.headers["cache-control"] == "no-store"
    assert "needs the SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH credentials" in page_text(
        refused[0].text
    )
    assert "refused those credentials" in page_text(refused[1].text)


def test_flower_style_lists_of_credentials_each_open_the_console(
    gateway_settings: Settings,
) -> None:
    s = dataclasses.replace(
        server_settings(gateway_settings), flower_basic_auth="ops:one,audit:two:with-colon"
    )
    s = dataclasses.replace(s, operations=dataclasses.replace(s.operations, console_token=None))
    with client_of(s) as client:
        assert client.get("/console", auth=("ops", "one")).status_code == 200
        assert client.get("/console", auth=("audit", "two:with-colon")).status_code == 200
        assert client.get("/console", auth=("ops", "two:with-colon")).status_code == 401
        answer = client.get("/console", headers=BEARER)  # no console token configured
    assert answer.status_code == 401
    assert answer.headers.get_list("www-authenticate") == [
        'Basic realm="spark-integrations console", charset="UTF-8"'
    ]


def test_server_mode_with_nothing_configured_stays_closed(gateway_settings: Settings) -> None:
    s = server_settings(gateway_settings, flower_basic_auth=None)
    s = dataclasses.replace(s, operations=dataclasses.replace(s.operations, console_token=None))
    with client_of(s, client=LOOPBACK) as client:
        answers = [client.get("/console"), client.get("/console", auth=BASIC)]
    for answer in answers:
        assert answer.status_code == 403
        assert (
            "The console is closed: set SPARK_INTEGRATIONS_CONSOLE_TOKEN (a bearer token) or "
            "SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH (user:password) to open it."
        ) in page_text(answer.text)


# -- the replay and its guards ------------------------------------------------------------------


def queued(redis_url: str, queue: str = QUEUE_CALLS) -> list[dict[str, Any]]:
    """The tasks waiting in ``queue`` on the broker: name and kwargs of each."""
    client = redis.Redis.from_url(redis_url)
    try:
        messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()
    found = []
    for message in messages:
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append({"task": message["headers"]["task"], "kwargs": kwargs})
    return found


def queued_ids(redis_url: str, queue: str = QUEUE_CALLS) -> list[dict[str, Any]]:
    """The task ids of the tasks waiting in ``queue``."""
    client = redis.Redis.from_url(redis_url)
    try:
        return [
            {"task_id": json.loads(raw)["headers"]["id"]} for raw in client.lrange(queue, 0, -1)
        ]
    finally:
        client.close()


def replayed_at(s: Settings, letter_id: str) -> Any:
    with session_scope(s.database_url) as session:
        letter = session.get(DeadLetter, letter_id)
        assert letter is not None
        return letter.replayed_at


@pytest.fixture
def fleet(
    store_settings: Settings, filled: Filled, redis_url: str, broker: Celery
) -> Iterator[tuple[Settings, TestClient]]:
    """Server mode on this machine's Redis (coordination and broker), with the console's
    credentials; the client holds the operator's Basic credentials."""
    s = server_settings(store_settings, console_token=TOKEN, redis_url=redis_url)
    app = create_app(s, celery=lambda: broker)
    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as client:
        client.auth = BASIC
        yield s, client


def form_of(client: TestClient) -> dict[str, str]:
    page = client.get("/console")
    assert page.status_code == 200
    fields = hidden_fields(page.text)
    return {"token": fields["token"][0], "seen": fields["seen"][0]}


def test_a_valid_replay_sends_the_letter_once_and_says_so(
    fleet: tuple[Settings, TestClient], filled: Filled, redis_url: str
) -> None:
    s, client = fleet
    # The call's outcome was unknown: its idempotency record stops repeats until replayed.
    idempotency = IdempotencyStore(redis.Redis.from_url(redis_url, decode_responses=True))
    record = idempotency.record_key(filled.key_id, "create_message", filled.secrets["letter_key"])
    idempotency.client.hset(record, mapping={"state": "failed", "fp": "x", "owner": "o"})
    form = form_of(client)
    path = f"/console/dead-letters/{filled.letter_id}/replay"

    answer = client.post(path, data=form, headers=SAME_ORIGIN)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console#dead-letters"
    cookie = answer.headers["set-cookie"].lower()
    assert "samesite=strict" in cookie and "httponly" in cookie and "path=/console" in cookie
    [sent] = queued(redis_url)
    assert sent["task"] == "integrations.call"
    assert sent["kwargs"] == {  # exactly what was sent the first time
        "connection_id": filled.key_id,
        "action": "create_message",
        "params": {"text": "hello", "token": filled.secrets["letter_param"]},
        "idempotency_key": filled.secrets["letter_key"],
    }
    assert not idempotency.client.exists(record)
    assert replayed_at(s, filled.letter_id) is not None

    # The same form again (a double click, a resubmission): nothing more is sent.
    again = client.post(path, data=form, headers=SAME_ORIGIN)
    assert again.status_code == 303
    assert len(queued(redis_url)) == 1
    # Back on the page: the flash message (once), the letter replayed, a fresh form.
    page = client.get("/console")
    text = page_text(page.text)
    assert f"Dead letter {filled.letter_id} was not replayed again" in text
    assert "not replayed" not in text.replace("was not replayed again", "")
    assert "set-cookie" in page.headers  # the flash is deleted once shown
    assert "not replayed again" not in page_text(client.get("/console").text)
    # Replaying a replayed letter again is possible from a page showing that state.
    assert client.post(path, data=form_of(client), headers=SAME_ORIGIN).status_code == 303
    assert len(queued(redis_url)) == 2


def test_the_first_replays_flash_names_the_new_task(
    fleet: tuple[Settings, TestClient], filled: Filled, redis_url: str
) -> None:
    _, client = fleet
    path = f"/console/dead-letters/{filled.letter_id}/replay"
    assert client.post(path, data=form_of(client), headers=SAME_ORIGIN).status_code == 303
    text = page_text(client.get("/console").text)
    [task_id] = [m["task_id"] for m in queued_ids(redis_url)]
    assert f"Dead letter {filled.letter_id} replayed as task {task_id}." in text
    # A flash cookie the console did not write (planted by a neighbouring site) is not shown.
    client.cookies.set(FLASH_COOKIE, "Your session expired: sign in at evil.example")
    assert "evil.example" not in client.get("/console").text


def refused_replays(
    client: TestClient, filled: Filled, form: dict[str, str], other_form: dict[str, str]
) -> dict[str, Any]:
    path = f"/console/dead-letters/{filled.letter_id}/replay"
    forged = dict(form, token=flip_last(form["token"]))
    parts = form["token"].split(".")
    return {
        "no token": client.post(path, data={"seen": ""}, headers=SAME_ORIGIN),
        "empty token": client.post(path, data=dict(form, token=""), headers=SAME_ORIGIN),
        "forged token": client.post(path, data=forged, headers=SAME_ORIGIN),
        "later expiry": client.post(
            path,
            data=dict(form, token=".".join([str(int(parts[0]) + 999), *parts[1:]])),
            headers=SAME_ORIGIN,
        ),
        "another operator's token": client.post(path, data=other_form, headers=SAME_ORIGIN),
        "edited state": client.post(path, data=dict(form, seen="2020-01-01T00:00:00+00:00"),
                                    headers=SAME_ORIGIN),
        "another letter's token": client.post(
            "/console/dead-letters/another-letter/replay", data=form, headers=SAME_ORIGIN
        ),
        "cross-origin": client.post(path, data=form, headers={"Origin": "http://evil.example"}),
        "null origin": client.post(path, data=form, headers={"Origin": "null"}),
        "no origin nor referer": client.post(path, data=form),
        "cross-site referer": client.post(
            path, data=form, headers={"Referer": "http://evil.example/console"}
        ),
        "cross-site fetch": client.post(
            path, data=form, headers={**SAME_ORIGIN, "Sec-Fetch-Site": "cross-site"}
        ),
        "other port": client.post(
            path, data=form, headers={"Origin": "http://gateway.test:8131"}
        ),
        "not a form": client.post(path, json=form, headers=SAME_ORIGIN),
        "unauthenticated": client.post(path, data=form, headers=SAME_ORIGIN, auth=None),
    }  # fmt: skip


def test_replays_without_the_pages_token_or_from_elsewhere_are_refused(
    fleet: tuple[Settings, TestClient], filled: Filled, redis_url: str
) -> None:
    s, client = fleet
    form = form_of(client)
    other_form = form_of(TestClient(client.app, base_url=PUBLIC_URL, headers=BEARER))
    answers = refused_replays(client, filled, form, other_form)
    for why, answer in answers.items():
        expected = {"not a form": 400, "unauthenticated": 401}.get(why, 403)
        assert answer.status_code == expected, (why, answer.status_code, answer.text)
        assert "set-cookie" not in answer.headers, why
    assert "not made for this request" in page_text(answers["forged token"].text)
    assert "missing or malformed" in page_text(answers["no token"].text)
    assert "did not come from the console's own page" in page_text(answers["cross-origin"].text)
    assert queued(redis_url) == []
    assert replayed_at(s, filled.letter_id) is None
    # The form itself was good all along.
    path = f"/console/dead-letters/{filled.letter_id}/replay"
    assert client.post(path, data=form, headers=SAME_ORIGIN).status_code == 303
    # Same-origin by Referer (no Origin sent), and the public URL's origin, are accepted.
    referer = {"Referer": PUBLIC_URL + "/console"}
    assert client.post(path, data=form_of(client), headers=referer).status_code == 303
    assert len(queued(redis_url)) == 2


def test_an_expired_form_is_refused(
    fleet: tuple[Settings, TestClient], filled: Filled, redis_url: str
) -> None:
    _, client = fleet
    auth = client.app.state.console.auth  # type: ignore[attr-defined]
    now = auth.clock()
    auth.clock = lambda: now - CSRF_TTL - 1
    form = form_of(client)  # made half an hour and a second ago
    auth.clock = lambda: now
    answer = client.post(
        f"/console/dead-letters/{filled.letter_id}/replay", data=form, headers=SAME_ORIGIN
    )
    assert answer.status_code == 403 and "too old" in page_text(answer.text)
    assert queued(redis_url) == []


def test_a_letter_gone_meanwhile_is_a_404(
    fleet: tuple[Settings, TestClient], filled: Filled, redis_url: str
) -> None:
    s, client = fleet
    form = form_of(client)
    with session_scope(s.database_url) as session:
        session.delete(session.get(DeadLetter, filled.letter_id))
    answer = client.post(
        f"/console/dead-letters/{filled.letter_id}/replay", data=form, headers=SAME_ORIGIN
    )
    assert answer.status_code == 404 and "No dead letter has the id" in page_text(answer.text)
    assert queued(redis_url) == []


def test_the_replay_is_a_post(fleet: tuple[Settings, TestClient], filled: Filled) -> None:
    _, client = fleet
    answer = client.get(f"/console/dead-letters/{filled.letter_id}/replay")
    assert answer.status_code == 405


def test_a_broker_or_redis_that_does_not_answer_replays_nothing(
    store_settings: Settings, filled: Filled, redis_url: str, broker: Celery
) -> None:
    s = server_settings(store_settings, console_token=TOKEN, redis_url=redis_url)
    down = Celery("console-down", broker="redis://127.0.0.1:1/0")
    down.conf.update(broker_connection_timeout=0.5, broker_connection_retry=False,
                     task_publish_retry=False)  # fmt: skip
    path = f"/console/dead-letters/{filled.letter_id}/replay"
    try:
        with TestClient(create_app(s, celery=lambda: down), base_url=PUBLIC_URL) as client:
            client.auth = BASIC
            no_broker = client.post(path, data=form_of(client), headers=SAME_ORIGIN)
    finally:
        down.close()
    # The coordination Redis down (the letter's idempotency record cannot be lifted).
    s_down = dataclasses.replace(s, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(s_down, celery=lambda: broker), base_url=PUBLIC_URL) as client:
        client.auth = BASIC
        page = client.get("/console")
        no_redis = client.post(path, data=form_of(client), headers=SAME_ORIGIN)
    assert no_broker.status_code == 503 and "the broker does not answer" in page_text(
        no_broker.text
    )
    assert page.status_code == 200 and "unknown" in page_text(page.text)
    assert no_redis.status_code == 503
    assert "the coordination Redis does not answer" in page_text(no_redis.text)
    assert replayed_at(s, filled.letter_id) is None
    assert queued(redis_url) == []


def test_the_embedded_console_replays_from_loopback(
    store_settings: Settings, filled: Filled, redis_url: str, broker: Celery
) -> None:
    """No credentials in embedded mode, but the token and the origin check all the same."""
    s = dataclasses.replace(store_settings, redis_url=redis_url)
    path = f"/console/dead-letters/{filled.letter_id}/replay"
    with loopback_client(s, broker) as client:
        form = form_of(client)
        assert (
            client.post(path, data=form, headers={"Origin": "http://evil.example"}).status_code
            == 403
        )
        assert (
            client.post(path, data=dict(form, token="1.2.3"), headers=SAME_ORIGIN).status_code
            == 403
        )
        assert client.post(path, data=form, headers=SAME_ORIGIN).status_code == 303
    assert len(queued(redis_url)) == 1
