"""The command line as an operator uses it: exit statuses, JSON shapes, clear errors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet import base_env, run_cli, server_env, stop_embedded_redis

SECRET = "s3cr3t-value-4b1d"


@pytest.fixture
def env(short_tmp: Path) -> Iterator[dict[str, str]]:
    e = base_env(short_tmp / "home")
    yield e
    stop_embedded_redis(e)


def ok_json(env: dict[str, str], *args: str, stdin: str | None = None) -> object:
    out = run_cli(env, *args, "--json", stdin=stdin)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def assert_clean_error(out: object, code: int, *words: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)  # type: ignore[attr-defined]
    err = out.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err and "Traceback" not in out.stdout  # type: ignore[attr-defined]
    assert err.startswith("spark-integrations: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_connections_round_trip_keeps_secrets_encrypted(
    env: dict[str, str], tmp_path: Path
) -> None:
    added = ok_json(
        env,
        "connections", "add", "sandbox", "--name", "main",
        "--config", '{"base_url": "http://127.0.0.1:9"}',
        "--secret", f"api_key={SECRET}",
    )  # fmt: skip
    assert isinstance(added, dict)
    assert set(added) == {"id", "provider", "name", "status"}
    assert added["provider"] == "sandbox" and added["status"] == "active"
    cid = added["id"]

    # A secret from a file, and one read from stdin: neither on the command line.
    secret_file = tmp_path / "webhook.txt"
    secret_file.write_text("whsec-from-file\n")
    updated = ok_json(
        env, "connections", "update", cid,
        "--secret", f"webhook_secret=@{secret_file}", "--secret", "password",
        "--config", '{"rate_limit": 20}',
        stdin="pw-from-stdin\n",
    )  # fmt: skip
    assert updated == {**added}

    listed = ok_json(env, "connections", "list")
    assert listed == [added]
    home = Path(env["SPARK_INTEGRATIONS_HOME"])
    raw = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for plaintext in (SECRET, "whsec-from-file", "pw-from-stdin"):
        assert plaintext.encode() not in raw
    db = sqlite3.connect(home / "store.db")
    (config,) = db.execute("select config from connections").fetchone()
    assert json.loads(config) == {"base_url": "http://127.0.0.1:9", "rate_limit": 20}
    db.close()

    oauth = ok_json(env, "connections", "add", "sandbox", "--name", "needs-connect")
    assert isinstance(oauth, dict) and oauth["status"] == "needs_auth"

    removed = ok_json(env, "connections", "remove", cid)
    assert removed == {"id": cid, "removed": True}
    remaining = ok_json(env, "connections", "list")
    assert [c["name"] for c in remaining] == ["needs-connect"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["connections", "add", "nope", "--name", "x"], 2, ["unknown provider 'nope'"]),
        (["connections", "add", "sandbox", "--name", "x", "--config", "{bad"], 2, ["--config"]),
        (["connections", "add", "sandbox", "--name", "x", "--config", "[1]"], 2, ["JSON object"]),
        (
            ["connections", "add", "sandbox", "--name", "x", "--config", '{"base_url": "ftp://h"}'],
            2,
            ["base_url"],
        ),
        (["connections", "add", "sandbox", "--name", "x", "--secret", "bogus=1"], 2, ["bogus"]),
        (["connections", "add", "sandbox", "--name", "x", "--secret", "api_key=@/no/file"], 2, []),
        (["connections", "add", "sandbox"], 2, ["--name"]),
        (["connections", "remove", "no-such-id"], 1, ["no-such-id"]),
        (["connections", "update", "no-such-id", "--name", "y"], 1, ["no-such-id"]),
        (["connections", "update", "x"], 2, ["nothing to update"]),
        (["worker", "--queues", "integrations.nope"], 2, ["integrations.nope"]),
        (["worker", "--concurrency", "0"], 2, []),
        (["no-such-command"], 2, []),
    ],
)
def test_bad_input_gets_one_sentence(
    env: dict[str, str], args: list[str], code: int, words: list[str]
) -> None:
    assert_clean_error(run_cli(env, *args), code, *words)


def test_duplicate_name_is_refused(env: dict[str, str]) -> None:
    ok_json(env, "connections", "add", "sandbox", "--name", "dup")
    assert_clean_error(
        run_cli(env, "connections", "add", "sandbox", "--name", "dup"), 2, "exists already"
    )
    assert len(ok_json(env, "connections", "list")) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("SPARK_INTEGRATIONS_BROKER_URL", "http://h", ["SPARK_INTEGRATIONS_BROKER_URL"]),
        ("SPARK_INTEGRATIONS_SECRET_KEYS", "not-a-key", ["SPARK_INTEGRATIONS_SECRET_KEYS"]),
        ("SPARK_INTEGRATIONS_VISIBILITY_TIMEOUT", "soon", ["VISIBILITY_TIMEOUT"]),
    ],
)
def test_bad_configuration_is_named(
    env: dict[str, str], variable: str, value: str, words: list[str]
) -> None:
    bad = {**env, variable: value}
    assert_clean_error(run_cli(bad, "connections", "list"), 1, *words)
    doctor = run_cli(bad, "doctor", "--json")
    assert doctor.returncode == 1
    report = json.loads(doctor.stdout)
    assert report["ok"] is False and variable in report["checks"][0]["detail"]


def test_doctor_embedded_on_a_bare_home(env: dict[str, str]) -> None:
    out = run_cli(env, "doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("configuration", "secret_keys", "broker", "store", "connectors"):
        assert f"ok   {name}:" in out.stdout
    assert "all checks passed." in out.stdout


def failed_checks(env: dict[str, str]) -> set[str]:
    """Run `doctor --json`, expecting exit 1; the names of the checks that failed."""
    out = run_cli(env, "doctor", "--json")
    assert out.returncode == 1, out.stdout
    return {c["name"] for c in json.loads(out.stdout)["checks"] if not c["ok"]}


@pytest.mark.server
def test_server_mode_doctor_names_what_is_down(
    short_tmp: Path, redis_url: str, postgres_url: str
) -> None:
    env = server_env(
        short_tmp / "home", broker=redis_url, redis_url=redis_url, database_url=postgres_url
    )
    behind = run_cli(env, "doctor", "--json")
    assert behind.returncode == 1
    store = next(c for c in json.loads(behind.stdout)["checks"] if c["name"] == "store")
    assert store["ok"] is False and "db upgrade" in store["detail"]
    assert_clean_error(run_cli(env, "connections", "list"), 1, "db upgrade")

    assert run_cli(env, "db", "upgrade").returncode == 0
    good = run_cli(env, "doctor", "--json")
    assert good.returncode == 0, good.stdout
    assert json.loads(good.stdout)["ok"] is True

    broker_down = {**env, "SPARK_INTEGRATIONS_BROKER_URL": "redis://127.0.0.1:1/0"}
    assert failed_checks(broker_down) == {"broker"}
    amqp_down = {**env, "SPARK_INTEGRATIONS_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}
    assert failed_checks(amqp_down) == {"broker"}
    db_down = {
        **env,
        "SPARK_INTEGRATIONS_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none",
    }
    assert failed_checks(db_down) == {"store"}
    assert "unreachable" in run_cli(db_down, "doctor").stdout

    no_keys = {k: v for k, v in env.items() if k != "SPARK_INTEGRATIONS_SECRET_KEYS"}
    for args in (["doctor"], ["worker"], ["beat"], ["db", "upgrade"], ["connections", "list"]):
        out = run_cli(no_keys, *args)
        assert out.returncode == 1, args
        assert "SPARK_INTEGRATIONS_SECRET_KEYS" in out.stdout + out.stderr
        assert "Traceback" not in out.stdout + out.stderr

    no_auth = run_cli(env, "flower")
    assert_clean_error(no_auth, 2, "SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH")


@pytest.mark.server
def test_worker_refuses_a_store_behind_its_migrations(
    short_tmp: Path, redis_url: str, postgres_url: str
) -> None:
    env = server_env(
        short_tmp / "home", broker=redis_url, redis_url=redis_url, database_url=postgres_url
    )
    assert_clean_error(run_cli(env, "worker"), 1, "db upgrade")


def test_connectors_list_shows_the_contract_shape(env: dict[str, str]) -> None:
    rows = ok_json(env, "connectors", "list")
    assert isinstance(rows, list)
    sandbox = next(r for r in rows if r["name"] == "sandbox")
    assert set(sandbox) == {
        "name", "title", "actions", "streams", "webhook_scheme", "config_keys", "secret_keys",
        "auth_kinds", "endpoint_config_keys", "docs", "webhook_events",
    }  # fmt: skip
    assert "create_message" in [a["name"] for a in sandbox["actions"]]
    assert [s["name"] for s in sandbox["streams"]] == ["items", "items_newest", "items_by_tag"]
    by_tag = sandbox["streams"][2]
    assert [(p["name"], p["required"]) for p in by_tag["params"]] == [("tag", True)]
    assert {"base_url", "rate_limit", "client_id"} <= set(sandbox["config_keys"])
    assert {"api_key", "client_secret", "webhook_secret"} <= set(sandbox["secret_keys"])


def test_doctor_names_connections_that_need_reauthorisation(env: dict[str, str]) -> None:
    added = ok_json(
        env, "connections", "add", "sandbox", "--name", "revoked", "--secret", "api_key=k"
    )
    assert isinstance(added, dict)
    db = sqlite3.connect(Path(env["SPARK_INTEGRATIONS_HOME"]) / "store.db")
    with db:
        db.execute("update connections set status = 'needs_reauth' where id = ?", (added["id"],))
    db.close()
    assert failed_checks(env) == {"store"}
    assert "Needing re-authorisation: revoked." in run_cli(env, "doctor").stdout


def test_list_shows_why_and_new_direct_credentials_heal_a_connection(env: dict[str, str]) -> None:
    """`connections list` says why a connection needs re-authorisation; an update that gives it
    credentials usable on their own makes it active again; OAuth-only secrets do not."""
    added = ok_json(
        env,
        "connections",
        "add",
        "sandbox",
        "--name",
        "svc",
        "--config",
        '{"base_url": "http://127.0.0.1:9", "client_id": "app"}',
        "--secret",
        "client_secret=cs",
    )
    assert isinstance(added, dict) and added["status"] == "needs_auth"
    db = sqlite3.connect(Path(env["SPARK_INTEGRATIONS_HOME"]) / "store.db")
    with db:
        db.execute(
            "update connections set status = 'needs_reauth', status_reason = 'the grant died' "
            "where id = ?",
            (added["id"],),
        )
    db.close()
    listed = run_cli(env, "connections", "list")
    assert "needs_reauth (the grant died)" in listed.stdout
    same = ok_json(env, "connections", "update", added["id"], "--secret", "client_secret=new")
    assert isinstance(same, dict) and same["status"] == "needs_reauth"
    healed = ok_json(
        env,
        "connections",
        "update",
        added["id"],
        "--config",
        '{"grant_type": "client_credentials"}',
    )
    assert isinstance(healed, dict) and healed["status"] == "active"
