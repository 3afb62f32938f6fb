"""The console's page: what it shows of the store and the coordination Redis, and what never.

The store is a migrated SQLite store (tests/unit/gateway/conftest.py) filled with a connection
in ``needs_reauth`` with its OAuth token, a connection with an API key, a sync with runs, a
dead letter and a webhook event, every secret of them a known string the page must not hold.
Rate budgets and breakers are read from this machine's Redis where a test needs them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from celery import Celery
from starlette.testclient import TestClient

from spark_integrations.coordination import Bucket, RedisCircuitBreaker, RedisRateBudget
from spark_integrations.coordination.client import connect
from spark_integrations.gateway import create_app
from spark_integrations.migrations import runner
from spark_integrations.settings import Settings
from spark_integrations.store import (
    DeadLetter,
    SecretBox,
    SyncDefinition,
    SyncRun,
    WebhookEvent,
    session_scope,
)
from spark_integrations.store.connections import add_connection
from spark_integrations.store.tokens import mark_needs_reauth, save_connected_token
from spark_integrations.store.types import utcnow
from tests.unit.gateway.conftest import PUBLIC_URL

REAUTH_REASON = "the provider refused the refresh token (invalid_grant); connect it again"
LOOPBACK = ("127.0.0.1", 50123)


@dataclass(frozen=True)
class Filled:
    """Ids of what :func:`fill_store` wrote, and every secret it wrote."""

    oauth_id: str
    key_id: str
    sync_id: str
    letter_id: str
    event_id: str
    secrets: dict[str, str]


def _secret(label: str) -> str:
    return f"{label}-{secrets.token_hex(12)}"


def fill_store(s: Settings) -> Filled:
    """A store holding one of everything the console shows, each secret a known string."""
    known = {
        name: _secret(name)
        for name in (
            "client_secret",
            "webhook_secret",
            "access_token",
            "refresh_token",
            "api_key",
            "config_secret",
            "letter_param",
            "payload_secret",
            "result_secret",
            "letter_key",
        )
    }
    box = SecretBox(s.secret_keys)
    now = utcnow()
    with session_scope(s.database_url) as session:
        oauth = add_connection(
            session,
            box,
            provider="sandbox",
            name="acme-oauth",
            config={
                "base_url": "http://127.0.0.1:9",
                "client_id": known["config_secret"],
                "rate_limit": 0.1,
            },
            secrets={
                "client_secret": known["client_secret"],
                "webhook_secret": known["webhook_secret"],
            },
            status="active",
        )
        save_connected_token(
            session,
            box,
            oauth.id,
            {
                "access_token": known["access_token"],
                "refresh_token": known["refresh_token"],
                "expires_in": 3600,
            },
            requested_at=now - timedelta(minutes=5),
        )
        assert mark_needs_reauth(session, oauth.id, REAUTH_REASON)
        keyed = add_connection(
            session,
            box,
            provider="sandbox",
            name="plain-key",
            config={"base_url": "http://127.0.0.1:9", "rate_limit": 7},
            secrets={"api_key": known["api_key"]},
            status="active",
        )
        sync = SyncDefinition(
            connection_id=keyed.id, stream="items", schedule="every:300", destination="store"
        )
        session.add(sync)
        session.flush()
        session.add_all(
            [
                SyncRun(
                    sync_id=sync.id,
                    status="succeeded",
                    records=42,
                    pages=3,
                    created_at=now - timedelta(minutes=20),
                    started_at=now - timedelta(minutes=20),
                    finished_at=now - timedelta(minutes=19),
                ),
                SyncRun(
                    sync_id=sync.id,
                    status="failed",
                    records=0,
                    pages=1,
                    error="the provider answered 502 three times",
                    created_at=now - timedelta(minutes=2),
                    started_at=now - timedelta(minutes=2),
                    finished_at=now - timedelta(minutes=1),
                ),
            ]
        )
        sent = {
            "connection_id": keyed.id,
            "action": "create_message",
            "params": {"text": "hello", "token": known["letter_param"]},
            "idempotency_key": known["letter_key"],
        }
        letter = DeadLetter(
            task="integrations.call",
            task_id="task-1",
            connection_id=keyed.id,
            action="create_message",
            kwargs={"connection_id": keyed.id, "params": {"text": "hello", "token": "***"}},
            replay_kwargs=box.encrypt(json.dumps(sent)),
            error="sandbox refused the credentials (401)",
            attempts=3,
        )
        event = WebhookEvent(
            provider="sandbox",
            connection_id=oauth.id,
            delivery_id="msg_2Lx",
            payload={"type": "message.created", "secret": known["payload_secret"]},
            event_type="message.created",
            status="processed",
            processed_at=now,
            result={"note": known["result_secret"]},
        )
        session.add_all([letter, event])
        session.flush()
        return Filled(oauth.id, keyed.id, sync.id, letter.id, event.id, known)


class _Page(HTMLParser):
    """The text of a page (style left out), its hidden form fields, and its tables' rows by the
    section they are in."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden: dict[str, list[str]] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self._section = ""
        self._in_style = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "style":
            self._in_style = True
        elif tag == "section":
            self._section = str(found.get("id"))
        elif tag == "tr":
            self.rows.setdefault(self._section, []).append([])
        elif tag == "td":
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")
        elif tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.hidden.setdefault(str(found["name"]), []).append(found.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        elif tag == "td" and self._cell is not None:
            self.rows[self._section][-1].append(re.sub(r"\s+", " ", "".join(self._cell)).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            return
        self.parts.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parsed(html: str) -> _Page:
    parser = _Page()
    parser.feed(html)
    return parser


def page_text(html: str) -> str:
    return re.sub(r"\s+", " ", " ".join(parsed(html).parts))


def hidden_fields(html: str) -> dict[str, list[str]]:
    return parsed(html).hidden


def row_of(html: str, section: str, needle: str) -> list[str]:
    """The one row of a section's table that mentions ``needle``."""
    rows = [r for r in parsed(html).rows.get(section, []) if any(needle in c for c in r)]
    assert len(rows) == 1, (section, needle, rows)
    return rows[0]


def server_settings(s: Settings, **changes: object) -> Settings:
    """``s`` as server mode with the console's credentials (the store stays SQLite)."""
    operations = dataclasses.replace(
        s.operations, console_token=str(changes.pop("console_token", "t" * 40))
    )
    return dataclasses.replace(
        s,
        mode="server",
        flower_basic_auth=changes.pop("flower_basic_auth", "ops:correct-horse"),
        operations=operations,
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_settings(request: pytest.FixtureRequest, gateway_settings: Settings) -> Settings:
    """The gateway's settings over a migrated store of each kind."""
    if request.param == "sqlite":
        return gateway_settings
    url = request.getfixturevalue("postgres_url")
    runner.upgrade(url)
    return dataclasses.replace(gateway_settings, database_url=url)


@pytest.fixture
def filled(store_settings: Settings) -> Filled:
    return fill_store(store_settings)


@pytest.fixture
def broker(redis_url: str) -> Iterator[Celery]:
    """A client app on this machine's Redis: what the console sends lands in its lists."""
    app = Celery("console-test", broker=redis_url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    yield app
    app.close()


def loopback_client(s: Settings, broker: Celery | None = None) -> TestClient:
    app = create_app(s, celery=(lambda: broker) if broker is not None else None)
    return TestClient(app, base_url=PUBLIC_URL, client=LOOPBACK, follow_redirects=False)


def test_the_page_shows_connections_syncs_letters_and_webhooks(
    store_settings: Settings, filled: Filled
) -> None:
    """Embedded mode, loopback, and the coordination Redis not running: 200, limits unknown."""
    with loopback_client(store_settings) as client:
        answer = client.get("/console")
    assert answer.status_code == 200, answer.text
    html = answer.text
    # The connection that needs re-authorisation, with its reason, and its token's state.
    name, provider, status, success, token, budgets, breakers = row_of(
        html, "connections", "acme-oauth"
    )
    assert filled.oauth_id in name and provider == "sandbox"
    assert status == f"needs_reauth {REAUTH_REASON}"
    assert success.endswith("webhook")  # processed just now, after the token was obtained
    assert re.fullmatch(
        r"expires \S+ \S+ \(in 5\d min\) obtained \S+ \S+ \(5\.0 min ago\) "
        r"\(version 1, authorization code\)",
        token,
    ), token
    # The coordination Redis is not running: budgets and breakers are unknown, not a 500.
    assert budgets == f"sandbox:{filled.oauth_id}: unknown"
    assert breakers == f"sandbox:{filled.oauth_id}: unknown sandbox: unknown"
    assert "does not answer" in page_text(html)
    keyed = row_of(html, "connections", "plain-key")
    assert keyed[2] == "active" and keyed[3].endswith("(19 min ago) sync run")
    assert keyed[4] == "no OAuth token"
    # The sync, its lag (since the run that succeeded 19 minutes ago) and its last runs, newest
    # first.
    _, conn, stream, schedule, destination, state, lag, next_run, runs = row_of(
        html, "syncs", filled.sync_id
    )
    assert (conn, stream, schedule, destination, state) == (
        "plain-key", "items", "every:300", "store", "enabled"
    )  # fmt: skip
    assert lag == "19 min" and next_run == "not scheduled"
    assert re.fullmatch(
        r"failed 0 records, 1 pages, started .* the provider answered 502 three times"
        r"succeeded 42 records, 3 pages, started .*\(19 min ago\)",
        runs,
    ), runs
    # The dead letter with its Replay form; the webhook by provider, type and status.
    letter = row_of(html, "dead-letters", filled.letter_id)
    assert letter[2:8] == [
        "integrations.call", f"plain-key {filled.key_id}", "create_message", "3",
        "sandbox refused the credentials (401)", "not replayed",
    ]  # fmt: skip
    assert letter[8] == "Replay"
    event = row_of(html, "webhooks", "msg_2Lx")
    assert event[1:7] == [
        "sandbox", f"acme-oauth {filled.oauth_id}", "message.created", "msg_2Lx", "processed", "0",
    ]  # fmt: skip


def test_no_secret_reaches_the_page(
    store_settings: Settings, filled: Filled, redis_url: str
) -> None:
    s = server_settings(store_settings, redis_url=redis_url)
    with TestClient(create_app(s), base_url=PUBLIC_URL) as client:
        answer = client.get("/console", auth=("ops", "correct-horse"))
    assert answer.status_code == 200
    body = answer.text
    leaked = {name for name, value in filled.secrets.items() if value in body}
    assert not leaked, leaked
    assert "correct-horse" not in body and s.operations.console_token not in body  # type: ignore[operator]
    for key in s.secret_keys:
        assert key not in body
    # The replay tokens are HMACs over the operator's identity, not the credentials.
    [token] = hidden_fields(body)["token"]
    assert "correct-horse" not in token


def test_headers_forbid_framing_sniffing_caching_and_anything_from_elsewhere(
    gateway_settings: Settings,
) -> None:
    with loopback_client(gateway_settings) as client:
        answer = client.get("/console")
    assert answer.status_code == 200
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "style-src 'unsafe-inline'" in csp and "script" not in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"].startswith("text/html")
    # No script, and nothing loaded from anywhere (the only URLs are the page's own forms).
    assert "<script" not in answer.text.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", answer.text)


def test_budgets_and_breakers_come_from_the_coordination_redis(
    store_settings: Settings, filled: Filled, redis_url: str
) -> None:
    s = dataclasses.replace(store_settings, redis_url=redis_url)
    client_redis = connect(redis_url, decode_responses=True)
    try:
        budget = RedisRateBudget(client_redis)
        key = f"sandbox:{filled.key_id}"
        budget.acquire([Bucket(key, 7.0)])
        budget.learn(key, rate=2.0, pause=120.0)
        # One call sent and four deferred on the other connection (0.1/s: a slot every 10 s).
        oauth_key = f"sandbox:{filled.oauth_id}"
        grants = [budget.acquire([Bucket(oauth_key, 0.1)], horizon=60) for _ in range(5)]
        assert [g.allowed for g in grants] == [True] + [False] * 4
        breaker = RedisCircuitBreaker(client_redis)
        for _ in range(5):
            breaker.record_failure([key], "t")
        breaker.record_failure(["sandbox"], "t")
        with loopback_client(s) as client:
            answer = client.get("/console")
    finally:
        client_redis.close()
    assert answer.status_code == 200
    assert "does not answer" not in page_text(answer.text)
    budgets, breakers = row_of(answer.text, "connections", "plain-key")[5:7]
    # A 429's pause pushed the schedule to its end: booked ahead, but nobody deferred.
    assert re.fullmatch(
        rf"{key}: 2/s \(configured 7/s, the provider's headers say 2/s\), "
        r"booked 1[12]\d\.\d\d s ahead, "
        r"paused until \S+ \S+ \(in (1\.\d|2\.0) min\)",
        budgets,
    ), budgets
    assert re.fullmatch(
        rf"{key}: open 5/5 failures, probes \S+ \S+ \(in \d+ s\) sandbox: closed 1/5 failures",
        breakers,
    ), breakers
    # The other connection's own keys: its four deferred callers; the connector's key is shared.
    budgets, breakers = row_of(answer.text, "connections", "acme-oauth")[5:7]
    assert re.fullmatch(
        rf"{oauth_key}: 0\.1/s, booked \d\.\d\d s ahead, about 4 deferred", budgets
    ), budgets
    assert breakers == f"{oauth_key}: closed 0/5 failures sandbox: closed 1/5 failures"


def test_a_store_that_cannot_be_read_is_a_503_page(gateway_settings: Settings) -> None:
    s = dataclasses.replace(
        gateway_settings, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    with loopback_client(s) as client:
        answer = client.get("/console")
    assert answer.status_code == 503
    assert "store cannot be reached" in answer.text
    assert answer.headers["cache-control"] == "no-store"


def test_everything_shown_is_escaped(gateway_settings: Settings) -> None:
    s = gateway_settings
    box = SecretBox(s.secret_keys)
    with session_scope(s.database_url) as session:
        conn = add_connection(
            session,
            box,
            provider="sandbox",
            name="<script>alert(1)</script>",
            config={},
            secrets={},
            status="active",
        )
        mark_needs_reauth(session, conn.id, '"><img src=x onerror=alert(2)>')
        session.add(
            DeadLetter(
                task="integrations.call",
                connection_id=conn.id,
                action="<b>bold</b>",
                error="<iframe src=//evil.example>",
                attempts=1,
            )
        )
    with loopback_client(s) as client:
        body = client.get("/console").text
    assert "<script>" not in body and "<img" not in body and "<iframe" not in body
    assert "<b>bold" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
