"""The flow "GitHub -> spark": each new GitHub issue with a chosen label runs a spark workflow.

Against the real automagik-spark 0.3.7 (the session fixture ``real_spark``), real fleet
workers and the GitHub emulator. The operator's recipe (README, and docs/recipes.md)::

    syncs add GITHUB issues --param owner=O --param repo=R --param labels=bug --every 1m \
        --destination spark:SPARK:WORKFLOW_ID --with "input=GitHub issue #{number}: {title} ..." \
        --deliver new

What is checked: each issue with the label runs the workflow once, with the issue as input
(spark's task row shows the issue's title in its input, and the workflow's source received
it); an issue without the label runs nothing; the next sync after one new labelled issue (and
one unlabelled) runs exactly one more; an issue edited after its run is stored again but runs
nothing (``--deliver new``); without ``--with input=`` the whole issue record is the input
(JSON: spark's task view parses it, its input_data is the issue), and that sync, delivering
changes (the default), runs again for an edited issue. No spark API key, GitHub token or fleet
secret key is in a worker's log, a task result or a dead letter.
"""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.emulators.agents_source import AgentsSourceEmulator
from tests.emulators.github import GitHub
from tests.integration.fleet import add_connection, broker_idle, dead_letters, run_cli, wait_for
from tests.integration.providers import logged, start_emulator, start_fleet

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

TOKEN = "ghp_" + uuid.uuid4().hex
OWNER, REPO = "octocat", "Hello-World"
#: The secret under which the spark connector keeps spark's API key (sent as X-API-Key).
SPARK_SECRET = "api_key"
INPUT = "GitHub issue #{number}: {title} ({html_url})"


def file_issue(emu: GitHub, title: str, *labels: str) -> int:
    """Someone files an issue on GitHub (the emulator's REST API); its number."""
    answer = requests.post(
        f"{emu.url}/repos/{OWNER}/{REPO}/issues",
        json={"title": title, "labels": list(labels)},
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["number"])


def edit_issue(emu: GitHub, number: int, title: str) -> None:
    """Someone retitles an issue on GitHub (its updated_at moves: the next sync reads it)."""
    answer = requests.patch(
        f"{emu.url}/repos/{OWNER}/{REPO}/issues/{number}",
        json={"title": title},
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def add_flow(
    env: dict[str, str], github: str, spark: str, workflow: str, *with_: str, deliver: str = ""
) -> str:
    """``syncs add`` of the recipe (on demand here: the test runs it when it wants)."""
    args = [
        "syncs", "add", github, "issues", "--param", f"owner={OWNER}", "--param", f"repo={REPO}",
        "--param", "labels=bug", "--destination", f"spark:{spark}:{workflow}",
    ]  # fmt: skip
    for item in with_:
        args += ["--with", item]
    if deliver:
        args += ["--deliver", deliver]
    added = run_cli(env, *args, "--json")
    assert added.returncode == 0, added.stderr
    view = json.loads(added.stdout)
    assert view["deliver"] == (deliver or "changes"), view
    return str(view["id"])


def stored_titles(env: dict[str, str], sync_id: str) -> dict[int, str]:
    """The issues a sync's record store holds: number -> title."""
    listed = run_cli(env, "records", "list", sync_id, "--json")
    assert listed.returncode == 0, listed.stderr
    return {r["data"]["number"]: r["data"]["title"] for r in json.loads(listed.stdout)}


def run_sync(env: dict[str, str], sync_id: str) -> dict[str, Any]:
    ran = run_cli(env, "syncs", "run", sync_id, "--wait", "--json", timeout=120)
    assert ran.returncode == 0, ran.stderr
    wait_for(lambda: broker_idle(env, "integrations.calls"), 60, "the sync's spark runs")
    return dict(json.loads(ran.stdout))


def test_labelled_issues_run_a_spark_workflow_once_each(
    real_spark: Any, redis_env: dict[str, str], short_tmp: Path, processes: list[Any]
) -> None:
    env = redis_env
    gh = start_emulator(GitHub(tokens=(TOKEN,)), processes)
    gh.add_repo(OWNER, REPO)
    agents = start_emulator(AgentsSourceEmulator(), processes)
    # An agent of this test's own: spark is shared by the tests of a process, and keeps one
    # workflow per remote flow id.
    triage = f"triage-{secrets.token_hex(3)}"
    agents.agents[triage] = "Answers with the issue it was given."
    real_spark.add_source(agents.url, agents.api_key)
    workflow = real_spark.sync_flow(triage, agents.url)["id"]

    bug = file_issue(gh, "The report crashes on empty input", "bug")
    file_issue(gh, "Add a dark theme", "enhancement")
    both = file_issue(gh, "Timeouts on big exports", "bug", "p1")

    github = add_connection(
        env, "github", {"base_url": gh.url}, f"token={TOKEN}", provider="github"
    )
    spark = add_connection(
        env, "spark", {"base_url": real_spark.url}, f"{SPARK_SECRET}={real_spark.api_key}",
        provider="spark",
    )  # fmt: skip
    sync_id = add_flow(env, github, spark, workflow, f"input={INPUT}", deliver="new")
    workers, _ = start_fleet(env, short_tmp, processes, concurrency=2)

    def runs() -> list[dict[str, Any]]:
        return real_spark.tasks(workflow_id=workflow)

    def text_of(number: int) -> str:
        issue = next(i for i in gh.issues(OWNER, REPO) if i["number"] == number)
        url = f"https://github.com/{OWNER}/{REPO}/issues/{number}"
        return INPUT.format(number=number, title=issue["title"], html_url=url)

    first = run_sync(env, sync_id)
    assert first["records"] == 2, first
    tasks = wait_for(lambda: len(runs()) >= 2 and runs(), 60, "two spark runs")
    # Spark's listing shows a task's input as spark stored it (the text), its task view as
    # its TaskResponse parses it (a text that is no JSON as {"value": text}).
    assert sorted(t["input_data"] for t in tasks) == sorted([text_of(bug), text_of(both)])
    view = real_spark.api("GET", f"/tasks/{tasks[0]['id']}")
    assert view["input_data"] == {"value": tasks[0]["input_data"]}
    assert all(t["status"] == "completed" for t in tasks), tasks
    assert sorted(r["message"] for r in agents.runs) == sorted([text_of(bug), text_of(both)])

    # One new labelled issue and one without: the next sync runs exactly one more.
    later = file_issue(gh, "Login loops forever", "bug")
    file_issue(gh, "Docs typo", "docs")
    second = run_sync(env, sync_id)
    assert second["records"] == 1, second
    tasks = runs()
    assert len(tasks) == 3, tasks
    assert tasks[0]["input_data"] == text_of(later)  # newest first
    # Nothing new: nothing runs.
    run_sync(env, sync_id)
    assert len(runs()) == 3
    # An issue edited after its run (--deliver new): the sync reads it and stores the change,
    # and runs nothing.
    retitled = "The report crashes on empty input and on blank lines"
    edit_issue(gh, bug, retitled)
    edited = run_sync(env, sync_id)
    assert edited["records"] == 1, edited
    assert len(runs()) == 3, runs()
    assert stored_titles(env, sync_id)[bug] == retitled

    # Without a template the issue itself is the input: spark parses it as JSON.
    whole = add_flow(env, github, spark, workflow)
    assert run_sync(env, whole)["records"] == 3
    records = [json.loads(t["input_data"]) for t in runs() if t["input_data"].startswith("{")]
    assert sorted(r["number"] for r in records) == [bug, both, later]
    assert all(r["title"] for r in records)
    assert len(runs()) == 6
    # That sync delivers changes (the default): an edited issue runs the workflow again; the
    # --deliver new sync stores the edit and runs nothing.
    edit_issue(gh, later, "Login loops forever on Safari")
    assert run_sync(env, whole)["records"] == 1
    assert len(runs()) == 7
    assert json.loads(runs()[0]["input_data"])["title"] == "Login loops forever on Safari"
    assert run_sync(env, sync_id)["records"] == 1
    assert len(runs()) == 7
    assert stored_titles(env, sync_id)[later] == "Login loops forever on Safari"

    letters = dead_letters(env)
    assert letters == [], letters
    secret_values = (real_spark.api_key, TOKEN, env["SPARK_INTEGRATIONS_SECRET_KEYS"])
    assert not logged(workers, *secret_values), "a secret is in a worker's log"
    client = redis.Redis.from_url(env["SPARK_INTEGRATIONS_RESULT_BACKEND"])
    try:
        results = [client.get(k) or b"" for k in client.scan_iter(match="celery-task-meta-*")]
    finally:
        client.close()
    assert results, "no task result was kept"
    assert not [s for s in secret_values for r in results if s.encode() in r]
