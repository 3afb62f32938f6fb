"""Page positions as messages show them: a link's credentials masked, a long token cut short.

A position is whatever a paginator resumes from (:mod:`connectors.pagination`): a provider's
cursor or token, an offset, a page number, or a next link. A link may carry a credential in its
user-info or its query (``?api_key=``, a signed URL's ``X-Amz-Signature``), so a message that
names a position (a run ended by a pagination cycle, say) masks those first, by the fleet's one
rule for what looks secret (:mod:`redaction`).
"""

from __future__ import annotations

import json
from typing import Any

from spark_integrations.redaction import MASK, mask_url

__all__ = ["MASK", "SHOWN_POSITION_CHARS", "describe_position", "mask_url", "position_loop_error"]

#: Characters of a position shown in a message; the rest is cut.
SHOWN_POSITION_CHARS = 200


def describe_position(position: Any) -> str:
    """A position as JSON text for a message: a link's credentials masked, cut short."""
    if isinstance(position, str) and "://" in position:
        # The fleet's one rule for what looks secret (redaction): user-info and query values.
        position = mask_url(position)
    text = json.dumps(position, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) > SHOWN_POSITION_CHARS:
        text = text[: SHOWN_POSITION_CHARS - 1] + "…"
    return text


def position_loop_error(
    *, connector: str, stream: str, position: Any, page: int, first_page: int
) -> str:
    """The sentence a sync run ends with when a page hands back a position it followed before.

    Args:
        connector: the connector's name.
        stream: the stream read.
        position: the repeated next-page position.
        page: the run's page that handed it back again (1 is the run's first page).
        first_page: the run's page that handed it back first.
    """
    cycle = page - first_page
    return (
        f"{connector}'s {stream} stream loops: page {page} of the run handed back the next-page "
        f"position {describe_position(position)}, which page {first_page} had handed back "
        f"already (a cycle of {cycle} page{'' if cycle == 1 else 's'}); the run stops with "
        f"the {page} page{'' if page == 1 else 's'} it read committed."
    )
