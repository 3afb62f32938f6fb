"""The gateway's answers to people and probes: small HTML pages, JSON, redirects.

Every page is built from escaped text only, is never cached (it may sit at a URL holding an
authorisation code) and sends no ``Referer`` onwards, so a code in the URL cannot leak to
another site through a link or a redirect.
"""

from __future__ import annotations

import html
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

__all__ = ["SECURITY_HEADERS", "json_answer", "page", "redirect"]

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Frame-Options": "DENY",
}

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - spark-integrations</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}
h1{{font-size:1.4rem}}</style></head>
<body><h1>{title}</h1><p>{message}</p></body></html>
"""


def page(status: int, title: str, message: str) -> HTMLResponse:
    """An HTML page of one heading and one sentence, both escaped."""
    body = _TEMPLATE.format(title=html.escape(title), message=html.escape(message))
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def json_answer(data: Any, status: int = 200) -> JSONResponse:
    """A JSON answer that no cache keeps."""
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def redirect(url: str) -> RedirectResponse:
    """A 302 to ``url`` that sends no ``Referer`` and is never cached."""
    return RedirectResponse(url, status_code=302, headers=SECURITY_HEADERS)
