"""A manifest's JSON Schema errors as one sentence each: ``FILE: key.path: what is wrong``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

__all__ = ["MAX_DEPTH", "key_path", "option_type_problem", "schema_problems", "value_problems"]

#: How deep a manifest's tables and lists may nest (the deepest key of a real one is ~6 levels):
#: deeper data is refused before the schema, whose checks recurse.
MAX_DEPTH = 64
# A float's largest finite value: a YAML integer beyond it cannot be a rate, a size or a wait.
_FLOAT_MAX = 1.7976931348623157e308

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a table of keys",
    "null": "null",
}
_SHOWN = 60
_PATTERNS = {
    "^[a-z][a-z0-9_]*$": "must start with a lowercase letter and hold only a-z, 0-9 and _",
    "^https?://": "must be an http:// or https:// URL",
    "^/": "must start with /",
    "^[A-Za-z_][A-Za-z0-9_]*$": "must be a name of letters, digits and _",
    "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$": "must be an HTTP header name",
    "^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$": "must be package.module:Class",
    "^[!-~]+$": "must be visible ASCII without spaces",
    "^([A-Za-z_][A-Za-z0-9_]*)?$": "must be a secret's name, or empty",
}
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean"}


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def key_path(data: Any, parts: Sequence[Any]) -> str:
    """A key path as messages show it: an item of ``actions`` or ``streams`` by its name."""
    shown: list[str] = []
    node = data
    for part in parts:
        child = None
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            child = node[part]
            name = child.get("name") if isinstance(child, dict) else None
            shown.append(name if isinstance(name, str) and name else str(part))
        else:
            shown.append(str(part))
            child = node.get(part) if isinstance(node, dict) else None
        node = child
    return ".".join(shown) or "(top level)"


def _sentence(error: ValidationError) -> list[tuple[list[Any], str]]:
    path = list(error.absolute_path)
    kind = error.validator
    value: Any = error.validator_value
    schema: Any = error.schema
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        known = sorted(properties)
        extra = [k for k in error.instance if k not in properties]
        hint = f"; known keys: {', '.join(known)}" if known else ""
        return [([*path, k], f"is not a known key{hint}.") for k in extra]
    if kind == "required":
        missing = [k for k in value if isinstance(error.instance, dict) and k not in error.instance]
        return [([*path, k], "is required.") for k in missing]
    if kind == "enum":
        listed = ", ".join(str(v) for v in value)
        return [(path, f"must be one of {listed} (not {_show(error.instance)}).")]
    if kind == "type":
        types = value if isinstance(value, list) else [value]
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
        return [(path, f"must be {words} (not {_show(error.instance)}).")]
    if kind == "pattern":
        said = _PATTERNS.get(str(value), f"must match the pattern {value}")
        return [(path, f"{said} (not {_show(error.instance)}).")]
    if kind in ("minimum", "exclusiveMinimum"):
        bound = "at least" if kind == "minimum" else "more than"
        return [(path, f"must be {bound} {value} (not {_show(error.instance)}).")]
    if kind == "maximum":
        return [(path, f"must be at most {value} (not {_show(error.instance)}).")]
    if kind in ("minItems", "minProperties", "minLength"):
        return [(path, "must not be empty.")]
    if kind == "uniqueItems":
        return [(path, "lists the same value twice.")]
    if kind == "oneOf":
        return _one_of(error, path, value)
    return [(path, error.message + ".")]


def _one_of(error: ValidationError, path: list[Any], value: Any) -> list[tuple[list[Any], str]]:
    """A value matching none of its shapes: what is wrong inside the shape made for its kind
    of value (a table, a list), else the shapes it may take."""
    instance = error.instance
    wanted = _JSON_TYPES.get(type(instance))
    for index, branch in enumerate(value):
        if isinstance(branch, dict) and wanted is not None and branch.get("type") == wanted:
            inner = [e for e in error.context or () if e.relative_schema_path[0] == index]
            if inner:
                return [found for e in inner for found in _sentence(e)]
    names = [str(v) for s in value if isinstance(s, dict) for v in s.get("enum", ())]
    kinds = [
        _TYPE_WORDS.get(str(s.get("type")), str(s.get("type")))
        for s in value
        if isinstance(s, dict) and "type" in s
    ]
    if names:
        also = f", or {' or '.join(kinds)} of them" if kinds else ""
        return [(path, f"must be one of {', '.join(names)}{also} (not {_show(instance)}).")]
    if kinds:
        return [(path, f"must be {' or '.join(kinds)} (not {_show(instance)}).")]
    return [(path, error.message + ".")]


def value_problems(data: Any, where: str) -> list[str]:
    """What the schema cannot say about values: numbers that are not finite (``.inf``, ``.nan``,
    an integer no float holds) and data nested beyond :data:`MAX_DEPTH`. Walked without
    recursion; YAML aliases are walked once each."""
    found: dict[str, str] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, list[Any]]] = [(data, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict | list):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if len(path) >= MAX_DEPTH:
                shown = key_path(data, path[:1])
                found.setdefault(f"{where}: {shown}: is nested too deeply.", shown)
                continue
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((value, [*path, key]) for key, value in items)
        elif (isinstance(node, float) and not math.isfinite(node)) or (
            isinstance(node, int) and not isinstance(node, bool) and abs(node) > _FLOAT_MAX
        ):
            shown = key_path(data, path)
            text = f"must be a finite number (not {_show(node)})."
            found.setdefault(f"{where}: {shown}: {text}", shown)
    return sorted(found, key=lambda line: found[line])


def schema_problems(validator: Draft202012Validator, data: Any, where: str) -> list[str]:
    """Every schema error of ``data``, one sentence each, sorted by key path."""
    if not isinstance(data, dict):
        return [f"{where}: (top level): must be a table of keys (not {_show(data)})."]
    found: dict[str, str] = {}
    for error in validator.iter_errors(data):
        for path, text in _sentence(error):
            shown = key_path(data, path)
            found.setdefault(f"{where}: {shown}: {text}", shown)
    # In order of their key paths: the problems of one key together.
    return sorted(found, key=lambda line: found[line])


def option_type_problem(annotation: str, value: Any) -> str | None:
    """What is wrong with a paginator option's value, read from its annotation (``str``,
    ``str | None``, ``int``): a field or parameter name is text, a start page a whole number."""
    kinds = {part.strip() for part in annotation.split("|")}
    if value is None:
        return None if "None" in kinds else "must be a name, not null."
    if "int" in kinds:
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"must be a whole number (not {value!r:.60})."
    if isinstance(value, str) and value:
        return None
    return f"must be a non-empty name (not {value!r:.60})."
