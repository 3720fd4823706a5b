"""msgspec's validation errors, told as one line naming the config key (`watch[1].address: ...`).

Kept apart from config.py, which holds the tree: this is only about wording what is wrong, and where.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import msgspec.inspect as mi

_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_WRONG_TYPE = re.compile(r"^Expected `(?P<expected>[^`]*)`, got `(?P<got>[^`]*)`$")
_CONSTRAINT = re.compile(r"^Expected `(?P<expected>[^`]*)` (?P<rule>.+)$")
_INVALID = re.compile(r"^Invalid value (?P<value>.*)$")
_NAMED = re.compile(r"^(?P<key>[a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)*): ")
_MSGSPEC_TYPE_NAMES = {"array": "list", "object": "table", "null": "nothing"}
_MSGSPEC_DESCRIPTIONS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
}


def explain(error: str, raw: dict[str, Any], root: type) -> tuple[str | None, str]:
    """(key, message) for a msgspec.ValidationError's text, e.g. `$.watch[0].chat_id` -> `watch[0].chat_id`."""
    found = _AT.match(error)
    assert found is not None  # the pattern matches any text
    what, path = found["what"], found["path"] or ""
    parts: list[str | int] = [name if name else int(index) for name, index in _PATH_PART.findall(path)]
    key = _key(parts)

    if m := _UNKNOWN.match(what):
        full = _key([*parts, m["name"]])
        return full, f"unknown key {full}"
    if m := _MISSING.match(what):
        full = _key([*parts, m["name"]])
        return full, f"missing required key {full}"

    type_ = _type_at(root, parts)
    if m := _WRONG_TYPE.match(what):
        expected = _describe(type_) if type_ is not None else _MSGSPEC_DESCRIPTIONS.get(m["expected"], m["expected"])
        got = _MSGSPEC_TYPE_NAMES.get(m["got"], m["got"])
        return key, f"{key}: expected {expected}, got {got}"
    if m := _CONSTRAINT.match(what):
        value = _value_at(raw, parts)
        if m["rule"] == "of length >= 1":
            return key, f"{key}: must not be empty"
        if m["rule"].startswith("matching regex") and type_ is not None:
            if "urls" in key:
                # An endpoint URL may carry an API key: say what is wrong without quoting it.
                return key, f"{key}: expected {_describe(type_)} (scheme, host, optional port and path; no fragment)"
            return key, f"{key}: expected {_describe(type_)}, got {show(value)}"
        expected = _describe(type_) if type_ is not None else _MSGSPEC_DESCRIPTIONS.get(m["expected"], m["expected"])
        return key, f"{key}: expected {expected} {m['rule']}, got {show(value)}"
    if (m := _INVALID.match(what)) and parts and (tags := _tags_at(root, parts[:-1], parts[-1])):
        noun = str(parts[0]).removesuffix("s")
        value = _value_at(raw, parts)
        return key, f"{key}: unknown {noun} {parts[-1]} {show(value)} (known: {', '.join(tags)})"
    # Our own words, from a dec_hook or a __post_init__: "problem", or at the root (Config) "key: problem".
    if key:
        return key, f"{key}: {what}"
    named = _NAMED.match(what)
    return (named["key"] if named else None), what


def _key(parts: list[str | int]) -> str:
    key = ""
    for part in parts:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


@cache
def _root_type(root: type) -> mi.Type:
    return mi.type_info(root)


def _strip(type_: mi.Type) -> mi.Type:
    """`type_` without its metadata and optional-ness, to walk into it."""
    while True:
        if isinstance(type_, mi.Metadata):
            type_ = type_.type
            continue
        if isinstance(type_, mi.UnionType):
            options = [t for t in type_.types if not isinstance(t, mi.NoneType)]
            if len(options) == 1:
                type_ = options[0]
                continue
        return type_


def _structs(type_: mi.Type) -> list[mi.StructType]:
    type_ = _strip(type_)
    if isinstance(type_, mi.UnionType):
        return [t for t in type_.types if isinstance(t, mi.StructType)]
    return [type_] if isinstance(type_, mi.StructType) else []


def _type_at(root: type, parts: list[str | int]) -> mi.Type | None:
    type_: mi.Type | None = _root_type(root)
    for part in parts:
        if type_ is None:
            return None
        if isinstance(part, int):
            inner = _strip(type_)
            type_ = inner.item_type if isinstance(inner, (mi.ListType, mi.VarTupleType)) else None
        else:
            type_ = next((f.type for s in _structs(type_) for f in s.fields if f.encode_name == part), None)
    return type_


def _tags_at(root: type, parts: list[str | int], field: str | int) -> list[str]:
    """The tags of the tagged union at `parts` if `field` is its tag field, else []."""
    found = _type_at(root, parts)
    structs = _structs(found) if found is not None else []
    return sorted(str(s.tag) for s in structs if s.tag_field == field)


def _describe(type_: mi.Type) -> str:
    """How a type reads in an error: `tuple[str, ...]` -> "a list of strings"."""
    match type_:
        case mi.Metadata(extra_json_schema={"description": str(description)}):
            return description
        case mi.Metadata():
            return _describe(type_.type)
        case mi.UnionType():
            options = [t for t in type_.types if not isinstance(t, mi.NoneType)]
            if all(isinstance(t, mi.StructType) for t in options):
                return "a table"
            return " or ".join(_describe(t) for t in options)
        case mi.BoolType():
            return "true or false"
        case mi.IntType():
            return "an integer"
        case mi.FloatType():
            return "a number"
        case mi.StrType() | mi.CustomType():  # every custom type here decodes from a string
            return "a string"
        case mi.ListType() | mi.VarTupleType():
            # The container is what is wrong here, so name the items plainly ("strings", not "ws:// URLs").
            return "a list of " + _plural(_describe(_strip(type_.item_type)))
        case mi.StructType():
            return "a table"
        case _:
            return "a valid value"


def _plural(description: str) -> str:
    for article in ("a ", "an "):
        if description.startswith(article):
            return description.removeprefix(article) + "s"
    return f"values that are {description}"


_MISSING_VALUE = object()


def _value_at(raw: Any, parts: list[str | int]) -> Any:
    for part in parts:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING_VALUE
    return raw


def show(value: Any) -> str:
    """A value as it would be written in TOML, on one line."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return "?" if value is _MISSING_VALUE else toml_type(value)


def toml_type(value: Any) -> str:
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "list"
    return type(value).__name__
