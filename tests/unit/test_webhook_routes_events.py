"""What a connector declares its webhook events do (``webhooks.events``), and how event types
match patterns: the manifests' maps, their checks (one sentence each), ``connectors list``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.manifest import check_manifest, load_manifest
from spark_integrations.connectors.webhook_events import (
    EventRefresh,
    event_matches,
    template_problem,
)

REPO = {"owner": "{repository.owner.login}", "repo": "{repository.name}"}


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("*", "issues.opened", True),
        ("*", None, True),
        ("*", "", True),
        ("issues", "issues", True),
        ("issues", "issues.opened", True),
        ("issues", "issues.opened.again", True),
        ("issues", "issue_comment.created", False),
        ("issues", "issuesx", False),
        ("issues", "Issues.opened", False),  # case-sensitive, on every platform
        ("issues.*", "issues", False),
        ("issues.*", "issues.opened", True),
        ("issues.opened", "issues.opened", True),
        ("issues.opened", "issues.closed", False),
        ("payment_intent.*", "payment_intent.succeeded", True),
        ("payment_intent.*", "payment_method.attached", False),
        ("channel_*", "channel_created", True),
        ("channel_*", "member_joined_channel", False),
        ("message", None, False),
        ("[abc", "[abc", True),  # an unclosed bracket is a literal, not an error
    ],
)
def test_event_types_match_patterns_and_the_types_below_them(
    pattern: str, event_type: str | None, matches: bool
) -> None:
    assert event_matches(pattern, event_type) is matches


def test_github_events_refresh_the_repositorys_syncs() -> None:
    github = get_connector("github")
    assert github.refreshes_for("issues.opened") == (EventRefresh.of("issues", REPO),)
    assert github.refreshes_for("pull_request.closed") == (
        EventRefresh.of("pull_requests", REPO),
        EventRefresh.of("issues", REPO),
    )
    assert github.refreshes_for("issue_comment.created") == (
        EventRefresh.of("issue_comments", REPO),
        EventRefresh.of("issues", REPO),
    )
    assert github.refreshes_for("push") == ()
    assert github.refreshes_for(None) == ()


def test_stripe_events_refresh_the_events_listing_and_new_objects() -> None:
    stripe = get_connector("stripe")
    events = EventRefresh("events")
    assert stripe.refreshes_for("charge.succeeded") == (events, EventRefresh("charges"))
    assert stripe.refreshes_for("customer.created") == (events, EventRefresh("customers"))
    # Stripe's listings go by created: an update is found in the events listing only.
    assert stripe.refreshes_for("customer.updated") == (events,)
    assert stripe.refreshes_for("invoice.created") == (events, EventRefresh("invoices"))


def test_slack_events_refresh_a_channels_messages_and_the_listings() -> None:
    slack = get_connector("slack")
    assert slack.refreshes_for("message") == (
        EventRefresh.of("messages", {"channel": "{event.channel}"}),
    )
    assert slack.refreshes_for("channel_rename") == (EventRefresh("channels"),)
    assert slack.refreshes_for("team_join") == (EventRefresh("users"),)
    assert slack.refreshes_for("reaction_added") == ()


def test_a_connector_declaring_nothing_refreshes_nothing() -> None:
    assert get_connector("spark").refreshes_for("anything") == ()
    assert get_connector("spark").describe()["webhook_events"] == {}


def test_connectors_list_shows_what_events_refresh() -> None:
    described = get_connector("github").describe()["webhook_events"]
    assert described["issues"] == [{"stream": "issues", "params": REPO}]
    assert [r["stream"] for r in described["pull_request"]] == ["pull_requests", "issues"]
    sandbox = get_connector("sandbox").describe()["webhook_events"]
    assert sandbox == {
        "item": [{"stream": s, "params": {}} for s in ("items", "items_newest", "items_by_tag")]
    }


BASE = """\
name: mini
base_url: https://api.mini.test
streams:
  - name: things
    path: /things
    params: {owner: {required: true, type: string}}
    primary_key: id
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_manifests_events_build_the_declaration(tmp_path: Path) -> None:
    cls = load_manifest(
        write(
            tmp_path,
            BASE
            + "webhooks:\n  scheme: hmac-sha256\n  events:\n"
            + '    "thing.*": {stream: things, params: {owner: "{owner.login}"}}\n'
            + '    "*": [{stream: things}]\n',
        )
    )
    assert cls.refreshes_for("thing.created") == (
        EventRefresh.of("things", {"owner": "{owner.login}"}),
        EventRefresh("things"),
    )
    assert cls.refreshes_for("other") == (EventRefresh("things"),)


@pytest.mark.parametrize(
    ("events", "words"),
    [
        ('{"a": {stream: nothing}}', "webhooks.events.a.stream: names no stream 'nothing'"),
        (
            '{"a": {stream: things, params: {repo: "{x}"}}}',
            "webhooks.events.a.params.repo: is not a param of the stream things",
        ),
        ('{"a": {stream: things, params: {owner: "{x"}}}', "the template is malformed"),
        ('{"a": {stream: things, params: {owner: "{x!r}"}}}', "format spec or conversion"),
        ('{"a": {stream: things, params: {owner: "{a..b}"}}}', "is not a field name"),
        ('{"a": {stream: things, more: 1}}', "webhooks.events.a.more: is not a known key"),
        ('{"a": {params: {}}}', "webhooks.events.a.stream: is required"),
        ('{"a": {stream: things, params: {owner: 3}}}', "must be text"),
        ('{"a": []}', "webhooks.events.a: must not be empty"),
        ('{"a": things}', "webhooks.events.a: must be a table of keys or a list"),
    ],
)
def test_a_bad_events_map_is_one_sentence_per_problem(
    tmp_path: Path, events: str, words: str
) -> None:
    path = write(tmp_path, BASE + f"webhooks:\n  scheme: hmac-sha256\n  events: {events}\n")
    found = check_manifest(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}: ") and words in found[0], found


def test_events_without_a_scheme_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "webhooks:\n  events: {a: {stream: things}}\n")
    assert check_manifest(path) == [
        f"{path}: webhooks.events: needs a webhooks.scheme: no event arrives without one."
    ]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{a.b} and {c.0}", None),
        ("plain {{braces}}", None),
        ("{a", "is malformed"),
        ("{a:>3}", "format spec"),
        ("{ a}", "not a field name"),
    ],
)
def test_template_problems_follow_the_destinations_grammar(
    template: str, problem: str | None
) -> None:
    from spark_integrations.destinations.templates import check_template
    from spark_integrations.errors import UsageError

    found = template_problem(template)
    if problem is None:
        assert found is None
        check_template(template)
    else:
        assert found is not None and problem in found
        with pytest.raises(UsageError):
            check_template(template)
