"""``keys rotate`` on SQLite: every secret under the newest key, concurrent writers win, reruns."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, select, update

from spark_integrations.errors import SecretError
from spark_integrations.migrations import runner
from spark_integrations.store import Connection, OAuthFlow, OAuthToken, SecretBox, session_scope
from spark_integrations.store.engine import engine_for
from spark_integrations.store.keys import RotationProgress, encrypted_tables, rotate_secrets
from spark_integrations.store.models import new_id
from spark_integrations.store.types import utcnow
from spark_integrations.workers.cli import main
from tests.unit.conftest import dispose_engines

ROWS = 23  # with batch_size=5: five batches, the last one short


def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def store(sqlite_url: str) -> str:
    runner.upgrade(sqlite_url)
    return sqlite_url


def fill(url: str, box: SecretBox, rows: int = ROWS) -> dict[tuple[str, str, str], str]:
    """Connections (some without secrets), tokens, flows; returns {(table, column, id): plain}."""
    plain: dict[tuple[str, str, str], str] = {}
    with session_scope(url) as s:
        for i in range(rows):
            conn = Connection(
                id=new_id(), provider="sandbox", name=f"c{i:03}", config={}, status="active"
            )
            if i % 7 != 3:  # a few connections hold no secret: NULL is left alone
                value = json.dumps({"api_key": f"key-{i}"})
                conn.credentials = box.encrypt(value)
                plain[("connections", "credentials", conn.id)] = value
            s.add(conn)
            s.flush()
            if i % 2 == 0:
                access, refresh = f"access-{i}", f"refresh-{i}"
                s.add(
                    OAuthToken(
                        connection_id=conn.id,
                        access_token=box.encrypt(access),
                        refresh_token=box.encrypt(refresh),
                    )
                )
                plain[("oauth_tokens", "access_token", conn.id)] = access
                plain[("oauth_tokens", "refresh_token", conn.id)] = refresh
            if i % 5 == 0:
                flow_id = uuid.uuid4().hex
                verifier = f"verifier-{i}"
                s.add(
                    OAuthFlow(
                        id=flow_id,
                        connection_id=conn.id,
                        link_expires_at=utcnow() + timedelta(minutes=10),
                        code_verifier=box.encrypt(verifier),
                    )
                )
                plain[("oauth_flows", "code_verifier", flow_id)] = verifier
    return plain


def stored(url: str) -> dict[tuple[str, str, str], bytes]:
    """Every non-null encrypted value of the store, keyed like :func:`fill`'s answer."""
    out: dict[tuple[str, str, str], bytes] = {}
    with engine_for(url).connect() as conn:
        for enc in encrypted_tables():
            for column in enc.columns:
                query = select(enc.primary_key[0], column).where(column.is_not(None))
                for row_id, token in conn.execute(query):
                    out[(enc.name, column.name, row_id)] = bytes(token)
    return out


def test_discovery_finds_every_encrypted_column() -> None:
    names = {name for enc in encrypted_tables() for name in enc.column_names}
    assert {
        "connections.credentials",
        "oauth_tokens.access_token",
        "oauth_tokens.refresh_token",
        "oauth_flows.code_verifier",
        "dead_letters.replay_kwargs",
    } <= names
    by_name = {enc.name: enc for enc in encrypted_tables()}
    assert [c.name for c in by_name["connections"].primary_key] == ["id"]
    assert [c.name for c in by_name["oauth_tokens"].primary_key] == ["connection_id"]


def test_rotation_moves_every_secret_to_the_newest_key_and_reruns_do_nothing(store: str) -> None:
    old, new = new_key(), new_key()
    plain = fill(store, SecretBox([old]))
    before = stored(store)
    assert before.keys() == plain.keys()

    progress: list[tuple[str, int]] = []

    def on_progress(p: RotationProgress) -> None:
        progress.append((p.table.name, p.rows))

    report = rotate_secrets(
        lambda: session_scope(store), SecretBox([new, old]), batch_size=5, on_progress=on_progress
    )

    after = stored(store)
    assert after.keys() == plain.keys()
    newest_only = SecretBox([new])
    for where, token in after.items():
        assert token != before[where]
        assert newest_only.decrypt(token) == plain[where], where
    total = report.total
    assert total.examined == total.reencrypted == len(plain)
    assert total.already_current == total.changed_concurrently == 0
    assert report.columns["connections.credentials"].examined == sum(
        1 for t, _, _ in plain if t == "connections"
    )
    # Progress after every batch of every table, counting rows (NULLs included) per table.
    assert [rows for table, rows in progress if table == "connections"] == [5, 10, 15, 20, ROWS]
    assert dict(progress) == {"connections": ROWS, "oauth_tokens": 12, "oauth_flows": 5}
    assert report.rows == ROWS + 12 + 5

    again = rotate_secrets(lambda: session_scope(store), SecretBox([new, old]), batch_size=5)
    assert again.total.reencrypted == 0
    assert again.total.already_current == len(plain)
    assert stored(store) == after


def test_resumes_where_a_previous_run_stopped(store: str) -> None:
    old, new = new_key(), new_key()
    plain = fill(store, SecretBox([old]))

    class Interrupted(Exception):
        pass

    def stop_after_two_batches(p: RotationProgress) -> None:
        if p.rows == 10:
            raise Interrupted

    with pytest.raises(Interrupted):
        rotate_secrets(
            lambda: session_scope(store),
            SecretBox([new, old]),
            batch_size=5,
            on_progress=stop_after_two_batches,
        )
    both, newest_only = SecretBox([new, old]), SecretBox([new])
    midway = stored(store)
    assert all(both.decrypt(t) == plain[w] for w, t in midway.items())
    current = [w for w, t in midway.items() if newest_only.is_current(t)]
    assert 0 < len(current) < len(plain)

    report = rotate_secrets(lambda: session_scope(store), both, batch_size=5)
    assert report.total.already_current == len(current)
    assert report.total.reencrypted == len(plain) - len(current)
    assert all(newest_only.decrypt(t) == plain[w] for w, t in stored(store).items())


class RacingBox(SecretBox):
    """A box that lets a concurrent writer replace one value between the read and the update."""

    def __init__(self, keys: list[str], url: str, victim: str, replacement: bytes) -> None:
        super().__init__(keys)
        self.url, self.victim, self.replacement = url, victim, replacement

    def rotate(self, token: bytes) -> bytes:
        with session_scope(self.url) as s:
            current = s.get(Connection, self.victim)
            assert current is not None
            if current.credentials == token:
                s.execute(
                    update(Connection)
                    .where(Connection.id == self.victim)
                    .values(credentials=self.replacement)
                )
        return super().rotate(token)


def test_a_concurrent_write_wins_over_the_rotation(store_url: str) -> None:
    # On both backends: the update counts of a batch come from the driver's executemany.
    store = store_url
    old, new = new_key(), new_key()
    plain = fill(store, SecretBox([old]))
    victim = next(row_id for (t, _, row_id) in plain if t == "connections")
    # The concurrent writer (a token refresh) runs with the new key list.
    replacement = SecretBox([new, old]).encrypt('{"api_key": "refreshed"}')
    box = RacingBox([new, old], store, victim, replacement)

    report = rotate_secrets(lambda: session_scope(store), box, batch_size=5)

    assert report.total.changed_concurrently == 1
    assert report.columns["connections.credentials"].changed_concurrently == 1
    assert report.total.reencrypted == len(plain) - 1
    after = stored(store)
    assert after[("connections", "credentials", victim)] == replacement
    newest_only = SecretBox([new])
    for where, token in after.items():
        replaced = where == ("connections", "credentials", victim)
        expected = '{"api_key": "refreshed"}' if replaced else plain[where]
        assert newest_only.decrypt(token) == expected


def test_undecryptable_value_stops_with_table_column_and_id(store: str) -> None:
    old, new, lost = new_key(), new_key(), new_key()
    plain = fill(store, SecretBox([old]))
    victim = sorted(row_id for (t, _, row_id) in plain if t == "connections")[7]
    secret_text = "lost-secret-d41d8"
    with session_scope(store) as s:
        s.execute(
            update(Connection)
            .where(Connection.id == victim)
            .values(credentials=SecretBox([lost]).encrypt(secret_text))
        )
    with pytest.raises(SecretError) as info:
        rotate_secrets(lambda: session_scope(store), SecretBox([new, old]), batch_size=5)
    message = str(info.value)
    assert "connections.credentials" in message
    assert victim in message
    assert secret_text not in message and lost not in message and new not in message
    assert message.count(". ") == 0 and message.endswith(".")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # Batches before the bad row were committed and stay valid.
    both = SecretBox([new, old])
    for where, token in stored(store).items():
        if where[2] != victim:
            assert both.decrypt(token) == plain[where]


def test_composite_primary_keys_are_walked_in_order(empty_store_url: str) -> None:
    # No table of the store has one today; a future one must not break the walk.
    url = empty_store_url
    metadata = MetaData()
    table = Table(
        "pairs",
        metadata,
        Column("a", String(10), primary_key=True),
        Column("b", Integer, primary_key=True),
        Column("secret", LargeBinary),
    )
    metadata.create_all(engine_for(url))
    old, new = new_key(), new_key()
    box = SecretBox([old])
    rows = [{"a": a, "b": b, "secret": box.encrypt(f"{a}{b}")} for a in "xyz" for b in range(4)]
    with session_scope(url) as s:
        s.execute(table.insert(), rows)

    report = rotate_secrets(
        lambda: session_scope(url),
        SecretBox([new, old]),
        batch_size=5,
        tables=encrypted_tables(metadata),
    )

    assert report.rows == report.total.reencrypted == 12
    with engine_for(url).connect() as conn:
        for a, b, token in conn.execute(select(table)):
            assert SecretBox([new]).decrypt(token) == f"{a}{b}"


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def embedded_url(clean_env: Path) -> Iterator[str]:
    """The embedded store's URL; its engines are closed after the test."""
    url = f"sqlite:///{clean_env / 'store.db'}"
    yield url
    dispose_engines(url)


def test_command_rotates_in_embedded_mode(
    embedded_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = new_key(), new_key()
    monkeypatch.setenv("SPARK_INTEGRATIONS_SECRET_KEYS", old)
    main(["keys", "rotate"])  # also creates and migrates the embedded store
    plain = fill(embedded_url, SecretBox([old]), rows=12)
    capsys.readouterr()

    monkeypatch.setenv("SPARK_INTEGRATIONS_SECRET_KEYS", f"{new},{old}")
    main(["keys", "rotate", "--batch-size", "4", "--json"])
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert data["ok"] is True and data["keys"] == 2
    assert data["reencrypted"] == data["examined"] == len(plain)
    assert data["columns"]["oauth_flows.code_verifier"]["reencrypted"] == 3
    assert "keys rotate: connections.credentials 4 rows" in out.err
    assert "keys rotate: oauth_tokens.access_token, oauth_tokens.refresh_token" in out.err
    for where, token in stored(embedded_url).items():
        assert SecretBox([new]).decrypt(token) == plain[where]


def test_command_with_one_key_says_there_is_nothing_to_rotate(
    clean_env: Path, embedded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Embedded mode without the variable: the key of HOME/secret.key.
    key = new_key()
    clean_env.mkdir(parents=True)
    (clean_env / "secret.key").write_text(key + "\n")
    runner.upgrade(embedded_url)
    fill(embedded_url, SecretBox([key]), rows=3)
    main(["keys", "rotate"])
    out = capsys.readouterr().out
    assert "only one key is configured" in out
    assert "0 re-encrypted" in out


def test_command_reports_an_undecryptable_secret_in_one_sentence(
    clean_env: Path,
    embedded_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lost, new = new_key(), new_key()
    clean_env.mkdir(parents=True)
    runner.upgrade(embedded_url)
    fill(embedded_url, SecretBox([lost]), rows=2)
    monkeypatch.setenv("SPARK_INTEGRATIONS_SECRET_KEYS", new)
    with pytest.raises(SystemExit) as done:
        main(["keys", "rotate"])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("spark-integrations: connections.credentials of row ")
    assert err.count("\n") == 1 and "Traceback" not in err
