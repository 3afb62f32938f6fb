"""Flower, the real one, against the fleet's broker: authentication, workers, tasks, no secret.

In server mode ``spark-integrations flower`` requires ``SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH``
(refusing to start without it is tested in ``test_cli.py``). Here Flower runs with it beside two
real workers: it lists the workers and the calls they ran (task events reach it because Flower
switches them on in every worker it sees, ``celeryconfig.worker_send_task_events`` being off),
refuses anonymous and wrongly authenticated requests, and nothing it shows, through its API or its
pages, holds a secret of the calls it saw: API keys (the right one and a wrong one the provider
refuses), a basic-auth password, the fleet's secret keys, the store's password or Flower's own.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    base_env,
    client_app,
    free_port,
    outcome,
    run_cli,
    send_call,
    server_env,
    start_sandbox,
    stop_embedded_redis,
    wait_for,
    worker,
)


def status(url: str, auth: tuple[str, str] | None = None) -> int:
    try:
        return requests.get(url, auth=auth, timeout=5).status_code
    except requests.ConnectionError:
        return 0


def test_flower_serves_the_embedded_fleet(short_tmp: Path, processes: list[FleetProcess]) -> None:
    env = base_env(short_tmp / "home")
    port = free_port()
    try:
        processes.append(
            FleetProcess(env, ["flower", "--port", str(port)], short_tmp / "flower.log").start()
        )
        url = f"http://127.0.0.1:{port}/"
        assert wait_for(lambda: status(url) == 200, 60, "Flower to answer")
    finally:
        for proc in processes:
            proc.kill()
        stop_embedded_redis(env)


class Flower:
    """Flower's HTTP surface, logged in (``get``) or not (``anonymous``)."""

    def __init__(self, url: str, auth: tuple[str, str]) -> None:
        self.url = url
        self.auth = auth
        self.seen: list[str] = []  # every answer read, for the secret scan

    def get(self, path: str) -> requests.Response:
        answer = requests.get(self.url + path, auth=self.auth, timeout=30)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        self.seen.append(answer.text)
        return answer

    def json(self, path: str) -> Any:
        return self.get(path).json()

    def anonymous(self, path: str, auth: tuple[str, str] | None = None) -> requests.Response:
        answer = requests.get(self.url + path, auth=auth, timeout=30)
        self.seen.append(answer.text)
        return answer


@pytest.mark.server
def test_flower_lists_the_fleets_workers_and_tasks_behind_its_password_and_shows_no_secret(
    short_tmp: Path, redis_url: str, postgres_url: str, processes: list[Any]
) -> None:
    api_key = "sk-live-" + secrets.token_hex(16)
    wrong_key = "sk-wrong-" + secrets.token_hex(16)
    password = "pw-" + secrets.token_hex(16)
    store_password = "pg-" + secrets.token_hex(16)
    login = ("ops", "flower-" + secrets.token_hex(12))
    # This machine's PostgreSQL trusts local connections: the password is sent and ignored, and
    # is then one more secret that must not show.
    database_url = postgres_url.replace("postgres@", f"postgres:{store_password}@", 1)
    assert store_password in database_url
    env = server_env(
        short_tmp / "home",
        broker=redis_url,
        redis_url=redis_url,
        database_url=database_url,
        SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH=":".join(login),
    )
    up = run_cli(env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    box = start_sandbox(
        env,
        short_tmp,
        processes,
        f"--api-key={api_key}",
        f"--client-secret={password}",
        "--fault-rate=0.3",  # retries: Flower shows each retry's reason too
    )
    config = {"base_url": box.url, "rate_limit": 500}
    good = add_connection(env, "good", config, f"api_key={api_key}")
    basic = add_connection(env, "basic", config, "username=sandbox", f"password={password}")
    wrong = add_connection(env, "wrong", config, f"api_key={wrong_key}")

    port = free_port()
    flower = Flower(f"http://127.0.0.1:{port}", login)
    processes.append(
        FleetProcess(env, ["flower", "--port", str(port)], short_tmp / "flower.log").start()
    )
    wait_for(lambda: status(flower.url + "/healthcheck") == 200, 60, "Flower to answer")

    tag = secrets.token_hex(3)
    names = [f"flower-{tag}-{i}" for i in range(2)]
    workers = [
        worker(env, short_tmp / f"{name}.log", f"--hostname={name}@%h", concurrency=2)
        for name in names
    ]
    processes.extend(workers)
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.wait_ready()
        # Flower asks every worker to send task events (every 5 s): the calls below are sent
        # once both have been asked, so Flower sees each of them from its start.
        proc.wait_ready("enabled by remote", timeout=60)

    app = client_app(env)
    sent = [send_call(app, good, "create_message", {"text": f"g{i}"}) for i in range(8)]
    sent += [send_call(app, basic, "create_message", {"text": f"b{i}"}) for i in range(4)]
    sent += [send_call(app, wrong, "create_message", {"text": "w"}, key="w-1")]
    outcomes = {r.id: outcome(r, timeout=240) for r in sent}
    refused = outcomes[sent[-1].id]
    assert not refused[0] and "refused the credentials" in refused[1], refused
    expected = {tid: "SUCCESS" if ok else "FAILURE" for tid, (ok, _) in outcomes.items()}
    assert list(expected.values()).count("SUCCESS") >= 8, outcomes

    # Anonymous and wrongly authenticated requests are refused, pages and API alike.
    for path in ("/", "/workers", "/tasks", "/api/workers", "/api/tasks", "/broker"):
        assert flower.anonymous(path).status_code == 401, path
        assert flower.anonymous(path, ("ops", "wrong")).status_code == 401, path
        assert flower.anonymous(path, ("admin", login[1])).status_code == 401, path
    # Its health check answers anyone, and says nothing else; so do its Prometheus metrics
    # (task names, workers and counts, no arguments: scanned below with the rest).
    health = flower.anonymous("/healthcheck")
    assert (health.status_code, health.text) == (200, "OK")
    metrics = flower.anonymous("/metrics")
    assert metrics.status_code == 200
    assert 'task="integrations.call"' in metrics.text and "flower_events_total" in metrics.text

    # The workers: both listed (asked over the broker) and alive (their heartbeat events).
    hostnames = wait_for(
        lambda: [w for w in flower.json("/api/workers?refresh=1") if w.split("@")[0] in names],
        60,
        "Flower to list both workers",
    )
    assert sorted(h.split("@")[0] for h in hostnames) == names
    alive = flower.json("/api/workers?status=1")
    assert all(alive.get(h) is True for h in hostnames), alive
    listed = flower.json("/api/workers")
    for hostname in hostnames:
        queues = {q["name"] for q in listed[hostname]["active_queues"]}
        assert "integrations.calls" in queues, queues
        assert "integrations.call" in listed[hostname]["registered"]

    # The tasks: every call sent, in the state it ended in, run by one of the two workers.
    def shown() -> dict[str, Any] | None:
        tasks = flower.json("/api/tasks?limit=1000")
        states = {tid: (tasks.get(tid) or {}).get("state") for tid in expected}
        return tasks if states == expected else None

    tasks = wait_for(shown, 60, "Flower to show every call in its final state")
    for tid in expected:
        task = tasks[tid]
        assert task["name"] == "integrations.call", task
        assert task["worker"] in hostnames, task
        # What it shows of the arguments: the connection's id, the action, the params.
        assert any(cid in str(task["kwargs"]) for cid in (good, basic, wrong)), task
    failed = tasks[sent[-1].id]
    assert "refused the credentials" in str(failed["exception"]), failed

    # Every other view of the same data, read for the scan below.
    flower.json(f"/api/task/info/{sent[0].id}")
    flower.json(f"/api/task/info/{sent[-1].id}")
    flower.json(f"/api/task/result/{sent[0].id}")
    flower.json("/api/task/types")
    flower.json(f"/api/workers?workername={quote(hostnames[0])}")
    for page in ("/", "/workers", "/tasks", "/broker", f"/worker/{quote(hostnames[0])}"):
        flower.get(page)
    flower.get(f"/task/{sent[0].id}")
    flower.get(f"/task/{sent[-1].id}")
    table = "draw=1&start=0&length=100&search[value]=&order[0][column]=0&columns[0][data]=name"
    assert sent[0].id in flower.get(f"/tasks/datatable?{table}").text

    # No secret anywhere Flower shows anything.
    secret_values = {
        "the API key": api_key,
        "the refused API key": wrong_key,
        "the basic-auth password": password,
        "the store's password": store_password,
        "Flower's password": login[1],
        "the fleet's secret key": env["SPARK_INTEGRATIONS_SECRET_KEYS"],
    }
    everything = "\n".join(flower.seen)
    assert "integrations.call" in everything and good in everything  # the scan sees the calls
    leaked = [what for what, value in secret_values.items() if value in everything]
    assert not leaked, f"Flower shows {', '.join(leaked)}"
    assert not [what for what, value in secret_values.items() if value in json.dumps(outcomes)]
