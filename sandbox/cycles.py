"""Listings that loop, on request: a provider whose pagination hands back a page already seen.

An ``items`` listing asked with ``cycle_at=N`` (and ``cycle_length=K``, 1 by default) behaves
as a provider with a pagination bug: its page N hands back, as its next position, the position
of page N - K + 1 (A → B → A when K = 2; with K = 1 the page points to itself). The cycle goes
back to page 2 at the earliest (N > K), since page 1 has no position; a listing of fewer than N
pages ends as usual.

Every style loops alike, each with its own kind of position: the ``next_cursor`` or ``nextToken``
of that page, its ``next_offset`` or ``next_page``, or a ``Link`` to it (which carries the
cycle's parameters on, as it carries ``updated_since``). Page p holds the records of page p of
``/v1/items/by-page`` (``updated_since`` filters them), and in this mode cursors and tokens name
a page, so the cycle repeats exactly the positions handed back before, whatever the records do.
"""

from __future__ import annotations

import base64
import binascii
import math
from urllib.parse import urlencode

from spark_integrations.sandbox.common import Request, Response, dumps, error
from spark_integrations.sandbox.dataset import Dataset

__all__ = ["STYLES", "answer", "asked"]

#: The listing styles, by path: how each names its page size and its position in a request.
STYLES: dict[str, tuple[str, str]] = {
    "/v1/items": ("limit", "cursor"),
    "/v1/items/by-token": ("max_results", "next_token"),
    "/v1/items/by-link": ("limit", "after"),
    "/v1/items/by-offset": ("limit", "offset"),
    "/v1/items/by-page": ("per_page", "page"),
}
_MAX_CYCLE = 1_000_000


class _Bad(ValueError):
    """A parameter of a looping listing is invalid; its text is the 400's sentence."""


def asked(req: Request) -> bool:
    """True for a listing asked to loop (``cycle_at`` given)."""
    return req.path in STYLES and "cycle_at" in req.query


def _token(page: int) -> str:
    return base64.urlsafe_b64encode(f"page:{page}".encode()).rstrip(b"=").decode()


def _page_of_token(text: str, name: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        label, _, number = raw.partition(":")
        if label == "page" and number.isdigit() and int(number) >= 1:
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise _Bad(f"{name} is not a position of this looping listing: {text!r}")


def _number(req: Request, name: str, default: int, low: int, high: int) -> int:
    text = req.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise _Bad(f"{name} must be a whole number between {low} and {high}, not {text!r}")
    return int(text)


def _page_asked(req: Request, name: str, size: int) -> int:
    text = req.query.get(name)
    if not text:
        return 1
    if name == "offset":
        return _number(req, name, 0, 0, 2**62) // size + 1
    if name == "page":
        return _number(req, name, 1, 1, 2**62 // size)
    return _page_of_token(text, name)


def _body(
    req: Request, rows: list[bytes], page: int, size: int, total: int, after: int | None
) -> Response:
    """The answer of one page in the listing's own style, ``after`` its next page or None."""
    data = b"[" + b",".join(rows) + b"]"
    token = None if after is None else _token(after)
    if req.path == "/v1/items":
        return Response(200, b'{"data":' + data + b',"next_cursor":' + dumps(token) + b"}")
    if req.path == "/v1/items/by-token":
        tail = b"" if token is None else b',"nextToken":' + dumps(token)
        return Response(200, b'{"items":' + data + tail + b"}")
    if req.path == "/v1/items/by-link":
        if token is None:
            return Response(200, data)
        keep = ("limit", "updated_since", "cycle_at", "cycle_length")
        params = {"after": token, **{k: req.query[k] for k in keep if k in req.query}}
        url = f"{req.base_url}/v1/items/by-link?{urlencode(params)}"
        return Response(200, data, headers=[("Link", f'<{url}>; rel="next"')])
    meta: dict[str, int | None]
    if req.path == "/v1/items/by-offset":
        following = None if after is None else (after - 1) * size
        meta = {"offset": (page - 1) * size, "limit": size, "total": total}
        meta["next_offset"] = following
    else:
        meta = {"page": page, "per_page": size, "total_pages": math.ceil(total / size)}
        meta["next_page"] = after
    return Response(200, b'{"data":' + data + b"," + dumps(meta)[1:])


def answer(dataset: Dataset, req: Request, since_us: int | None, max_page: int) -> Response:
    """One page of a looping listing (see the module docstring), or a 400 naming what is bad."""
    size_name, position_name = STYLES[req.path]
    try:
        length = _number(req, "cycle_length", 1, 1, _MAX_CYCLE)
        at = _number(req, "cycle_at", 0, length + 1, _MAX_CYCLE)
        size = _number(req, size_name, max_page, 1, max_page)
        page = _page_asked(req, position_name, size)
    except _Bad as exc:
        return error(400, "invalid_request", str(exc))
    rows, total = dataset.at(since_us, (page - 1) * size, size)
    if page == at and rows:
        after: int | None = at - length + 1
    else:
        after = page + 1 if page * size < total else None
    return _body(req, rows, page, size, total, after)
