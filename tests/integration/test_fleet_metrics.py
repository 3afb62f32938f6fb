"""The whole fleet's metrics at a real gateway's ``/metrics``, after real work by two workers.

Two worker processes run calls against the real sandbox (some answered 429, some to a
connection that cannot be reached, some needing an OAuth token), a sync, and webhooks sent to
the gateway's intake and processed by the workers. The gateway's exposition is then parsed with
prometheus-client's own parser: every family the issue names is there, and its values are the
run's (calls sent across both workers add up exactly: no process's counts are missing).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from spark_integrations.constants import ALL_QUEUES
from spark_integrations.gateway.fleet_metrics import SOURCES
from spark_integrations.metrics_families import FAMILIES
from spark_integrations.store import session_scope
from spark_integrations.store.syncs import add_sync
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    client_app,
    free_port,
    outcome,
    send_call,
    start_sandbox,
    start_workers,
    wait_for,
)
from tests.integration.oauth_helpers import CLIENT, CLIENT_SECRET

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

API_KEY = "sk-metrics-" + uuid.uuid4().hex
HOOK_SECRET = "whsec_" + "bWV0cmljcy10ZXN0LXdlYmhvb2sta2V5LTAxMjM0NTY3"
CALLS = 40

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(gateway: str) -> Samples:
    text = requests.get(f"{gateway}/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, family: str, **match: str) -> float:
    """The sum of a family's samples whose labels include ``match``."""
    name = FAMILIES[family].sample
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name and set(match.items()) <= set(labels)
    )


def present(samples: Samples, family: str) -> bool:
    return any(sample == FAMILIES[family].sample for sample, _ in samples)


def signed(body: dict[str, Any], msg_id: str, secret: str = HOOK_SECRET) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    when = datetime.now(UTC)
    return raw, {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, raw),
    }


def test_metrics_show_the_whole_fleet_after_calls_a_sync_and_webhooks(
    redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = redis_env
    box = start_sandbox(env, short_tmp, processes, f"--api-key={API_KEY}", "--records=250")
    busy = add_connection(
        env,
        "busy",
        {"base_url": box.url, "rate_limit": 10},
        f"api_key={API_KEY}",
        f"webhook_secret={HOOK_SECRET}",
    )
    dead_port = free_port()  # nothing listens there: every request fails to connect
    down = add_connection(
        env,
        "down",
        {
            "base_url": f"http://127.0.0.1:{dead_port}",
            "breaker_fail_max": 1,
            "breaker_reset_timeout": 1,
            "retry_attempts": 2,
            "retry_window": 60,
        },
        f"api_key={API_KEY}",
    )
    machine = {**CLIENT, "base_url": box.url, "grant_type": "client_credentials"}
    granted = add_connection(env, "granted", machine, CLIENT_SECRET)
    refused = add_connection(env, "refused", machine, "client_secret=not-the-secret")
    workers = start_workers(env, short_tmp, processes, count=2, concurrency=1)
    app = client_app(env)

    # Calls at twice the connection's budget, a fifth of them answered 429 by the provider.
    box.faults(0.2, "429")
    results = [send_call(app, busy, "create_message", {"text": f"m{i}"}) for i in range(CALLS)]
    assert all(ok for ok, _ in (outcome(r) for r in results))
    box.faults(0.0, "429")
    injected = box.stats()["faults_injected"]
    assert injected > 0
    # Calls that fail (an unreachable provider; an OAuth client the provider refuses) and one
    # that needs a client-credentials token first.
    failing = [send_call(app, down, "create_message", {"text": f"d{i}"}) for i in range(2)]
    failing.append(send_call(app, refused, "create_message", {"text": "r"}))
    assert not any(ok for ok, _ in (outcome(r) for r in failing))
    ok, _ = outcome(send_call(app, granted, "create_message", {"text": "g"}))
    assert ok
    # Both worker processes ran calls: the totals below add up only with both processes' counts.
    done = [w.output().count("integrations.call[") for w in workers]
    assert all(n > 0 for n in done), done

    with session_scope(env["SPARK_INTEGRATIONS_DATABASE_URL"]) as session:
        sync_id = add_sync(session, connection_id=busy, stream="items", schedule=None).id
    run = app.send_task(
        "integrations.sync", kwargs={"sync_id": sync_id}, queue="integrations.syncs"
    ).get(timeout=240)
    assert run["ok"] and run["records"] == 250

    port = free_port()
    gateway_process = FleetProcess(env, ["gateway", f"--port={port}"], short_tmp / "gateway.log")
    processes.append(gateway_process)
    gateway_process.start().wait_ready("gateway listening on")
    gateway = f"http://127.0.0.1:{port}"
    hooks = f"{gateway}/webhooks/sandbox/{busy}"
    body = {"type": "test.ping", "data": {"n": 1}}
    raw, headers = signed(body, "msg_" + uuid.uuid4().hex)
    assert requests.post(hooks, data=raw, headers=headers, timeout=30).status_code == 202
    assert requests.post(hooks, data=raw, headers=headers, timeout=30).status_code == 202
    raw, forged = signed(body, "msg_" + uuid.uuid4().hex, secret="whsec_" + "Zm9yZ2Vk" * 4)
    assert requests.post(hooks, data=raw, headers=forged, timeout=30).status_code == 401

    def settled() -> Samples | None:
        samples = scrape(gateway)
        calls = total(samples, "calls", outcome="succeeded") + total(
            samples, "calls", outcome="failed"
        )
        processed = total(samples, "webhooks_processed", provider="sandbox", outcome="processed")
        intake = total(samples, "webhooks", provider="sandbox")  # the gateway's own counts
        return samples if calls == CALLS + 4 and processed == 1 and intake == 3 else None

    samples = wait_for(settled, 60, "the fleet's counts to reach the gateway", interval=0.5)

    # Calls by connector, action and outcome; attempts and retries; 429s.
    labels = {"connector": "sandbox", "action": "create_message"}
    assert total(samples, "calls", outcome="succeeded", **labels) == CALLS + 1
    assert total(samples, "calls", outcome="failed", **labels) == 3
    attempts = total(samples, "attempts", connector="sandbox", operation="create_message")
    assert attempts >= CALLS + 1 + injected + 4
    assert total(samples, "attempts", operation="items") >= run["pages"]
    assert total(samples, "retries", operation="create_message") >= injected + 2
    assert total(samples, "rate_limited", connection_id=busy) == injected
    # The rate budget: calls deferred instead of meeting more 429s, and its use.
    assert total(samples, "deferrals", connection_id=busy, reason="rate_budget") > 0
    assert total(samples, "budget_grants", bucket=f"sandbox:{busy}") >= CALLS + injected
    assert total(samples, "budget_rate", bucket=f"sandbox:{busy}") == 10
    assert present(samples, "budget_backlog_seconds")
    # The breaker of the unreachable connection opened.
    assert total(samples, "breaker_transitions", breaker=f"sandbox:{down}", state="open") >= 1
    assert total(samples, "breaker_state", breaker=f"sandbox:{down}") == 1  # one state at 1
    assert total(samples, "deferrals", connection_id=down, reason="circuit") >= 1
    # Token requests: one granted, one refused.
    assert total(samples, "token_refreshes", connector="sandbox", outcome="succeeded") == 1
    assert total(samples, "token_refreshes", connector="sandbox", outcome="refused") == 1
    # The sync: its run, pages and records, and its lag.
    of_sync = {"connector": "sandbox", "stream": "items", "sync_id": sync_id}
    assert total(samples, "sync_runs", outcome="succeeded", **of_sync) == 1
    assert total(samples, "sync_pages", **of_sync) == run["pages"]
    assert total(samples, "sync_records", **of_sync) == run["records"]
    assert (FAMILIES["sync_lag_seconds"].sample, tuple(sorted(of_sync.items()))) in samples
    # Dead letters, webhooks at the intake and processed, queue depth, the exporter's health.
    assert total(samples, "dead_letters", task="integrations.call") == 3
    assert total(samples, "webhooks", provider="sandbox", outcome="accepted") == 1
    assert total(samples, "webhooks", provider="sandbox", outcome="duplicate") == 1
    assert total(samples, "webhooks", outcome="refused", reason="bad_signature") == 1
    for queue in ALL_QUEUES:
        assert (FAMILIES["queue_depth"].sample, (("queue", queue),)) in samples
    for source in SOURCES:
        assert samples[(FAMILIES["scrape_up"].sample, (("source", source),))] == 1
    # No label holds an id of a task, a run or an event.
    shown = " ".join(value for _, labels in samples for _, value in labels)
    assert run["run_id"] not in shown and results[0].id not in shown
