"""Page positions as messages show them: a link's credentials masked, a long token cut short.

A position is whatever a paginator resumes from (:mod:`connectors.pagination`): a provider's
cursor or token, an offset, a page number, or a next link. A link may carry a credential in its
user-info or its query (``?api_key=``, a signed URL's ``X-Amz-Signature``), so a message that
names a position (a run ended by a pagination cycle, say) masks those first.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["MASK", "SHOWN_POSITION_CHARS", "describe_position", "mask_url", "position_loop_error"]

#: Characters of a position shown in a message; the rest is cut.
SHOWN_POSITION_CHARS = 200
#: What a masked credential reads as.
MASK = "***"

# Query parameters that carry a credential, by their words in any case style (api_key, apiKey,
# X-Amz-Signature, access_token, client_secret, key, sig). A paging token (page_token,
# nextToken, continuation-token) is the position itself, not a secret.
_SECRET_WORDS = frozenset(
    [
        "secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "signature",
        "sig",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "cookie",
        "session",
        "apikey",
        "key",
    ]
)
_PAGING_WORDS = frozenset(["page", "next", "pagination", "continuation", "cursor", "sync"])


def _is_secret_param(name: str) -> bool:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", spaced) if w]
    if not words:
        return False
    if words[-1] == "token":
        return len(words) == 1 or words[-2] not in _PAGING_WORDS
    return any(word in _SECRET_WORDS for word in words)


def mask_url(url: str) -> str:
    """The URL with its user-info's password and its credential-like query values masked.

    Raises:
        ValueError: the text is not a URL that can be split (a malformed port, say).
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(_is_secret_param(name) for name, _ in pairs):
        return parts._replace(netloc=netloc).geturl()
    query = urlencode([(k, MASK if _is_secret_param(k) else v) for k, v in pairs], safe="*")
    return parts._replace(netloc=netloc, query=query).geturl()


def describe_position(position: Any) -> str:
    """A position as JSON text for a message: a link's credentials masked, cut short."""
    if isinstance(position, str) and "://" in position:
        try:
            position = mask_url(position)
        except ValueError:  # not a URL after all: show nothing of it
            position = MASK
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
