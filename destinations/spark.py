"""The ``spark:CONNECTION_ID:WORKFLOW_ID`` destination: each new or changed record runs a spark
workflow once, with the record as its input (or each new record only, with ``--deliver new``:
a GitHub issue edited after its run does not run the workflow again).

It is an action destination whose action is fixed: the spark connection's ``run_workflow``,
with ``{"workflow_id": WORKFLOW_ID, "input": TEXT}``. TEXT is the ``input`` template
(``--with input=TEMPLATE``) rendered from the record, or the record as compact JSON with sorted
keys (spark parses an input that is JSON as JSON, so its task row shows the record's fields).

Spark takes no idempotency key, so what keeps a record version from running twice is the
fleet's own: each call carries the same key as any action destination's (the sync, the
record's key, its content digest and replication value), so a page delivered again after a
crash sends calls the fleet takes for repeats; and the call itself follows the rule of every
action its provider cannot deduplicate: a request whose answer was lost is never sent again
blindly. The call looks in spark's task rows for a run with that input first (the spark
connector's ``look``), and a call whose outcome stays unknown goes to the dead letters as
``outcome_unknown``; the page is committed either way, since calls are sent, not awaited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from spark_integrations.connectors import get_connector
from spark_integrations.connectors.actions import Action
from spark_integrations.destinations.base import Destination, register_destination
from spark_integrations.destinations.builtin import ActionDestination
from spark_integrations.destinations.templates import compact_json, render
from spark_integrations.errors import NotFoundError, SkippableError, UsageError
from spark_integrations.store import Connection

__all__ = ["RUN_WORKFLOW", "SPARK_PROVIDER", "SparkDestination"]

#: The provider a spark destination's connection must be of, and the action it calls.
SPARK_PROVIDER = "spark"
RUN_WORKFLOW = "run_workflow"


@register_destination
class SparkDestination(ActionDestination):
    """Each new or changed record version (each new record, with ``--deliver new``): one run of
    a spark workflow (one call of the spark connection's ``run_workflow``)."""

    kind = "spark"
    param_names: ClassVar[frozenset[str] | None] = frozenset({"input"})

    def __init__(self, argument: str) -> None:
        Destination.__init__(self, argument)
        self.connection_id, _, self.workflow_id = argument.partition(":")
        self.action = RUN_WORKFLOW

    @classmethod
    def parse(cls, argument: str) -> Destination:
        connection_id, sep, workflow_id = argument.partition(":")
        if not sep or not connection_id.strip() or not workflow_id.strip() or ":" in workflow_id:
            raise UsageError(
                "a spark destination is written 'spark:CONNECTION_ID:WORKFLOW_ID' "
                f"(got 'spark:{argument}')."
            )
        return cls(argument)

    def resolve(self, session: Session) -> Action:
        conn = session.get(Connection, self.connection_id)
        if conn is None:
            raise NotFoundError(
                f"no connection {self.connection_id!r} for the spark destination; "
                "`connections list` shows them."
            )
        if conn.provider != SPARK_PROVIDER:
            raise UsageError(
                f"connection {self.connection_id} is a {conn.provider} connection; the spark "
                "destination needs a spark connection."
            )
        return get_connector(conn.provider).get_action(RUN_WORKFLOW)

    def check(self, session: Session) -> None:
        self.resolve(session)  # its one param name, input, was checked by use_params

    def params_for(self, action: Action, record: Mapping[str, Any]) -> dict[str, Any]:
        template = self.params.get("input")
        text = compact_json(record) if template is None else render(template, record)
        try:
            return action.validate({"workflow_id": self.workflow_id, "input": text})
        except UsageError as exc:  # a value the action refuses
            raise SkippableError(str(exc)) from None
