"""Record templates: the text of one destination param made from one record's fields.

A template is text with placeholders naming a record's fields: ``{title}``, ``{user.login}``
(a field of an object), ``{labels.0}`` (an item of a list); ``{{`` and ``}}`` are literal
braces. A text value is put in as it is; any other value (a number, ``true``, ``null``, an
object, a list) as compact JSON, so ``{labels}`` gives ``["bug","ui"]``.

The text is split by the standard library's :class:`string.Formatter` (the grammar of
:meth:`str.format`, so its quoting rules are the ones Python users know); the fields are then
looked up here, since ``str.format`` reads ``{a.b}`` as an attribute and has no ``{a.0}``. A
format spec (``{n:>5}``) or conversion (``{n!r}``) is refused: a template names fields only,
so nothing in a template reaches an attribute or a method of a value (``{a.__class__}`` is
the field ``__class__`` of ``a``, which no record has). A list is indexed by ASCII digits only,
and what a template makes is at most :data:`MAX_RENDERED` characters (a short template
naming a large field many times must not build gigabytes): beyond that the record is skipped.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any

from spark_integrations.errors import SkippableError, UsageError

__all__ = ["MAX_RENDERED", "check_template", "compact_json", "fields_of", "render"]

_FORMATTER = string.Formatter()
#: The most characters one rendered template may hold (a message, a workflow's input).
MAX_RENDERED = 1_000_000


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text with sorted keys (a record as a call's text param)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _parts(template: str) -> list[tuple[str, tuple[str, ...] | None]]:
    """The template as (literal text, field path or None) pairs; UsageError when malformed."""
    if not isinstance(template, str):
        raise UsageError(f"a template must be text, not {type(template).__name__}.")
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:  # "Single '{' encountered ...", "expected '}' before end ..."
        reason = str(exc).rstrip(".")
        raise UsageError(
            f"the template {template[:80]!r} is malformed ({reason}); write {{{{ and }}}} for "
            "literal braces."
        ) from None
    parts: list[tuple[str, tuple[str, ...] | None]] = []
    for literal, field, spec, conversion in parsed:
        if field is None:
            parts.append((literal, None))
            continue
        if spec or conversion:
            raise UsageError(
                f"the placeholder {{{field}...}} in {template[:80]!r} has a format spec or "
                "conversion; a template names fields only, like {title} or {user.login}."
            )
        path = tuple(field.split("."))
        if any(not segment.strip() or segment != segment.strip() for segment in path):
            raise UsageError(
                f"the placeholder {{{field}}} in {template[:80]!r} is not a field name (it has "
                "an empty part or spaces); write one like {title}, {user.login} or {labels.0}."
            )
        parts.append((literal, path))
    return parts


def check_template(template: str) -> str:
    """``template`` when it is well formed; UsageError in one sentence when not."""
    _parts(template)
    return template


def fields_of(template: str) -> list[str]:
    """The fields a (well-formed) template names, in order, dotted as written."""
    return [".".join(path) for _, path in _parts(template) if path is not None]


_MISSING = object()


def _lookup(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for segment in path:
        if isinstance(value, Mapping):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isascii() and segment.isdigit():
            # ASCII only: "²" is a digit to str.isdigit, and int() refuses it; nor does int()
            # take more than 4,300 digits, and no list holds a 10-digit index.
            if len(segment) > 9:
                return _MISSING
            index = int(segment)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def render(template: str, record: Mapping[str, Any]) -> str:
    """The template filled from ``record``.

    Raises:
        UsageError: the template is malformed (checked when the sync is added, so only a
            template stored by other means meets this).
        SkippableError: the record lacks a field the template names, or the text would be
            longer than :data:`MAX_RENDERED` characters (the record is skipped, the rest of
            the page goes on).
    """
    out: list[str] = []
    size = 0
    for literal, path in _parts(template):
        pieces = [literal]
        if path is not None:
            value = _lookup(record, path)
            if value is _MISSING:
                raise SkippableError(
                    f"the record has no field {'.'.join(path)!r} for the template."
                )
            pieces.append(value if isinstance(value, str) else compact_json(value))
        size += sum(len(piece) for piece in pieces)
        if size > MAX_RENDERED:
            raise SkippableError(
                f"the template's text for this record is longer than {MAX_RENDERED:,} characters."
            )
        out.extend(pieces)
    return "".join(out)
