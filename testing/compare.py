"""Comparing what a connector sent with the request a recording documents, and looking for
secrets in everything a check saw."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from spark_integrations.testing.replay import Sent

__all__ = [
    "complete",
    "expected_fields",
    "leaks",
    "log_texts",
    "mask",
    "request_problems",
    "texts_of",
]

# LogRecord attributes every record has; any other attribute is a structured field (extra=).
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expected_fields(fields: Mapping[str, Any]) -> dict[str, list[str]]:
    """Query or form fields as a recording writes them (a value or a list), as decoded lists."""
    out: dict[str, list[str]] = {}
    for key, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out[str(key)] = [_text(v) for v in values]
    return out


def _header_problem(name: str, want: Any, got: str | None) -> str | None:
    if isinstance(want, Mapping):
        if want.get("absent"):
            return None if got is None else f"header {name} should be absent"
        if got is None:
            return f"header {name} is missing"
        if "prefix" in want and not got.startswith(str(want["prefix"])):
            return f"header {name} should start with {want['prefix']!r}"
        if "regex" in want and not re.fullmatch(str(want["regex"]), got):
            return f"header {name} should match {want['regex']!r}"
        return None
    if got is None:
        return f"header {name} is missing (expected {want!r})"
    if got != str(want):
        return f"header {name} is {got!r}, expected {want!r}"
    return None


_BODY_KEYS = ("json", "form", "no_body")


def complete(expected: Mapping[str, Any]) -> dict[str, Any]:
    """A documented request read as the whole of what is sent: no ``query`` documented means
    none is sent, and no ``json``, ``form`` or ``no_body`` means no body (a field the connector
    adds, in the query or the body, is then a difference, not something left unchecked)."""
    full = dict(expected)
    full.setdefault("query", {})
    if not any(key in full for key in _BODY_KEYS):
        full["no_body"] = True
    return full


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def request_problems(
    sent: Sent, expected: Mapping[str, Any], base_url: str, what: str
) -> list[str]:
    """How ``sent`` differs from the documented request: where it went (the base URL's scheme
    and host, or those of a documented absolute URL), method, path (under the base URL's
    path), query (exact, decoded), JSON body or form fields (decoded), headers (those named).
    Only what ``expected`` names is compared (see :func:`complete`)."""
    problems: list[str] = []
    if "method" in expected and sent.method != str(expected["method"]).upper():
        problems.append(f"{what}: method is {sent.method}, expected {expected['method']}")
    documented = str(expected.get("path", ""))
    origin = _origin(documented if documented.startswith(("http://", "https://")) else base_url)
    if origin and _origin(sent.url) != origin:
        problems.append(f"{what}: sent to {_origin(sent.url)}, expected {origin}")
    if "path" in expected:
        want = str(expected["path"])
        if not want.startswith(("http://", "https://")):
            want = urlsplit(base_url).path.rstrip("/") + "/" + want.lstrip("/")
        else:
            want = urlsplit(want).path
        if sent.path != want:
            problems.append(f"{what}: path is {sent.path}, expected {want}")
    if "query" in expected:
        want_query = expected_fields(expected["query"] or {})
        if sent.query != want_query:
            problems.append(f"{what}: query is {sent.query}, expected {want_query}")
    if "json" in expected:
        try:
            body = sent.json() if sent.body else None
        except ValueError:
            problems.append(f"{what}: the body is not JSON, expected {expected['json']!r}")
        else:
            if body != expected["json"]:
                problems.append(f"{what}: JSON body is {body!r}, expected {expected['json']!r}")
    if "form" in expected:
        want_form = expected_fields(expected["form"] or {})
        kind = sent.header("Content-Type") or ""
        if sent.body and not kind.startswith("application/x-www-form-urlencoded"):
            problems.append(f"{what}: Content-Type is {kind!r}, expected a form body")
        elif sent.form() != want_form:
            problems.append(f"{what}: form fields are {sent.form()}, expected {want_form}")
    if expected.get("no_body") and sent.body:
        problems.append(f"{what}: the request has a body, expected none")
    for name, want in (expected.get("headers") or {}).items():
        problem = _header_problem(str(name), want, sent.header(str(name)))
        if problem:
            problems.append(f"{what}: {problem}")
    return problems


def texts_of(*values: Any) -> list[str]:
    """What a reader could see of values: their ``str`` and ``repr``, JSON for documents, and
    an exception's arguments, notes and causes."""
    out: list[str] = []
    for value in values:
        out += [str(value), repr(value)]
        if isinstance(value, Mapping | list | tuple):
            out.append(json.dumps(value, default=repr))
        if isinstance(value, BaseException):
            out += _exception_texts(value)
    return out


def _exception_texts(exc: BaseException) -> list[str]:
    """An exception's arguments, notes and attributes (all but the provider's ``response``,
    which is never logged or kept), and the same of every cause and context in its chain."""
    out: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current is not exc:
            out += [str(current), repr(current)]
        out += [repr(a) for a in current.args]
        out += [str(n) for n in getattr(current, "__notes__", []) or []]
        out += [f"{k}={v!r}" for k, v in vars(current).items() if k != "response"]
        pending += [c for c in (current.__cause__, current.__context__) if c is not None]
    return out


def log_texts(records: Iterable[logging.LogRecord]) -> list[str]:
    """Every captured log line, its arguments, its traceback and its structured fields."""
    out: list[str] = []
    for record in records:
        out.append(record.getMessage())
        if record.args:
            out.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            out += texts_of(record.exc_info[1])
        if record.exc_text:
            out.append(record.exc_text)
        out += [f"{k}={v!r}" for k, v in record.__dict__.items() if k not in _RECORD_ATTRS]
    return out


def leaks(secrets: Iterable[str], texts: Iterable[tuple[str, str]]) -> list[str]:
    """Where a secret value appears: ``(where, text)`` pairs in, one line per leak out (the
    secret is named by its first characters only)."""
    found = []
    for where, text in texts:
        for secret in secrets:
            if secret and secret in text:
                found.append(f"a secret ({secret[:3]}...) appears in {where}")
    return sorted(set(found))


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (for failure messages)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
