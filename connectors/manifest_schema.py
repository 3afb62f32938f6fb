"""A manifest's JSON Schema errors as one sentence each: ``FILE: key.path: what is wrong``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

__all__ = ["key_path", "schema_problems"]

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
        return [(path, f"{_show(error.instance)} does not match the pattern {value}.")]
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
        options: list[ValidationError] = [e for e in error.context or () if e.validator != "type"]
        described = " or ".join(
            _TYPE_WORDS.get(str(s.get("type")), str(s.get("type")))
            for s in value
            if isinstance(s, dict) and "type" in s
        )
        if options and not described:
            return _sentence(options[0])
        if any(isinstance(s, dict) and "enum" in s for s in value):
            names = [str(v) for s in value if isinstance(s, dict) for v in s.get("enum", ())]
            return [(path, f"must be one of {', '.join(names)}, or a valid table/list of them.")]
        return [(path, f"must be {described or 'of another shape'} (not {_show(error.instance)}).")]
    return [(path, error.message + ".")]


def schema_problems(validator: Draft202012Validator, data: Any, where: str) -> list[str]:
    """Every schema error of ``data``, one sentence each, in file order of their paths."""
    if not isinstance(data, dict):
        return [f"{where}: (top level): must be a table of keys (not {_show(data)})."]
    found: list[str] = []
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        for path, text in _sentence(error):
            line = f"{where}: {key_path(data, path)}: {text}"
            if line not in found:
                found.append(line)
    return found
