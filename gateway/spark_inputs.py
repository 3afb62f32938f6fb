"""What a ``/spark`` run of an exposed action sends, and how spark's listing describes it.

Spark gives a run one text, its input (``message_content``). A JSON object is merged into the
exposure's fixed params (it may not change one of them: the operator fixed it, so spark's
input is refused rather than obeyed or silently dropped); any other text becomes the action's
one required text param the exposure leaves open. Kept apart from :mod:`gateway.spark_source`
(the HTTP side) because ``expose action`` writes the same description when it stores one.
"""

from __future__ import annotations

import json
from typing import Any

from spark_integrations.connectors.actions import Action
from spark_integrations.errors import UsageError

__all__ = ["call_params", "describe_action", "describe_sync", "text_param"]


def _accepts(declared: Any, kind: type) -> bool:
    return kind in (declared if isinstance(declared, tuple) else (declared,))


def text_param(action: Action, fixed: dict[str, Any]) -> str | None:
    """The one required text param of ``action`` the exposure leaves open, or None when there
    is none or more than one (spark's input then has to be a JSON object of params)."""
    open_text = [
        name
        for name, declared in action.params.items()
        if name not in fixed and _accepts(declared, str)
    ]
    return open_text[0] if len(open_text) == 1 else None


def call_params(action: Action, fixed: dict[str, Any], message: str) -> dict[str, Any]:
    """The params of the call a run makes: the exposure's, plus spark's input.

    The input is merged when it is a JSON object (it may not change a fixed param), else it
    becomes the action's one open required text param.

    Raises:
        UsageError: the input fits neither way, or the params are not the action's.
    """
    try:
        parsed = json.loads(message)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        parsed = None
    if isinstance(parsed, dict):
        clash = sorted(set(parsed) & set(fixed))
        if clash:
            raise UsageError(
                f"the input sets {clash[0]!r}, which this exposure fixes; leave it out."
            )
        params = {**fixed, **parsed}
    else:
        target = text_param(action, fixed)
        if target is None:
            raise UsageError(
                f"the input is not a JSON object of {action.name}'s params, and {action.name} "
                "has no single text param left open to take it; send a JSON object such as {}."
            )
        params = {**fixed, target: message}
    return action.validate(params)


def describe_action(connection: str, provider: str, action: Action, fixed: dict[str, Any]) -> str:
    """What spark's listing says of an exposed action: what it does and what input it takes."""
    open_params = [
        f"{name}{'' if name in action.params else '?'}"
        for name in (*action.params, *action.optional)
        if name not in fixed
    ]
    target = text_param(action, fixed)
    takes = f"text for {target!r}, or " if target else ""
    fixed_text = f" Fixed: {json.dumps(fixed, sort_keys=True)}." if fixed else ""
    return (
        f"Runs {action.name} on {provider} connection {connection}. Input: {takes}a JSON "
        f"object of params ({', '.join(open_params) or 'none'}).{fixed_text}"
    )


def describe_sync(stream: str, connection: str, destination: str) -> str:
    """What spark's listing says of an exposed sync."""
    return (
        f"Runs the sync of stream {stream} on connection {connection} into {destination} "
        "(incremental). Input: ignored."
    )
