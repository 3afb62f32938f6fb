"""The Slack connector passes the contract suite on Slack's documented answers."""

from __future__ import annotations

from spark_integrations.connectors.providers.slack import Slack
from spark_integrations.testing import ConnectorContract, recordings


class TestSlackContract(ConnectorContract):
    connector = Slack
    recordings = recordings("recordings/slack.yaml")


def test_reads_are_resent_after_an_unknown_outcome_and_posts_are_not() -> None:
    """Slack takes no idempotency key: a post whose answer was lost is not sent again; an
    update or a reaction (repeatable: twice leaves what once does) and a read (a list method,
    GET) may be."""
    assert not Slack.resend_safe(Slack.get_action("post_message"))
    assert Slack.resend_safe(Slack.get_action("update_message"))
    assert Slack.resend_safe(Slack.get_action("add_reaction"))
    assert Slack.resend_safe(Slack.get_action("list_conversations"))
    assert Slack.resend_safe(Slack.get_action("list_users"))
