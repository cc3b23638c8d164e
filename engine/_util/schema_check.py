"""A yes/no JSON Schema (2020-12) check for the keywords aidsafe's schemas
use, without importing jsonschema (about 0.1 s of start-up: referencing,
attrs, the bundled meta-schemas).

It answers whether a document is valid, never why: a ``False`` sends the
caller to jsonschema, whose errors name every problem, so only the valid
case, the common one, is decided here. A schema with a keyword this check
does not know, or a document with a non-string mapping key, gets ``None``
(ask jsonschema). It never says valid where jsonschema says invalid
(tests/util/test_schema_check.py compares the two on generated documents).
"""

from __future__ import annotations

import re
from typing import Any, Callable

Check = Callable[[Any], bool]

# Keywords that describe and never constrain.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples",
                          "deprecated", "readOnly", "writeOnly", "format"})
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


class Unsupported(Exception):
    """The schema uses something this check does not decide."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema means it (``enum``, ``const``,
    ``uniqueItems``): ``1 == 1.0`` but ``1 != true``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return a == b


class _Compiler:
    def __init__(self, root: dict):
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, pointer: str) -> Check:
        if pointer not in self.refs:
            if pointer != "#" and not pointer.startswith("#/$defs/"):
                raise Unsupported(f"$ref {pointer}")
            target = self.root
            for part in pointer[2:].split("/") if pointer != "#" else ():
                if not isinstance(target, dict) or part not in target:
                    raise Unsupported(f"$ref {pointer}")
                target = target[part]
            box: list[Check] = []
            self.refs[pointer] = lambda v: box[0](v)  # recursive references resolve through the box
            box.append(self.compile(target))
        return self.refs[pointer]

    def compile(self, schema: Any) -> Check:  # noqa: C901 - one branch per keyword
        if schema is True:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict):
            raise Unsupported("schema is not an object")
        checks: list[Check] = []
        for key, arg in schema.items():
            if key in _ANNOTATIONS:
                continue
            if key in ("then", "else") and "if" in schema:
                continue
            checks.append(self.keyword(key, arg, schema))
        return lambda v: all(check(v) for check in checks)

    def keyword(self, key: str, arg: Any, schema: dict) -> Check:  # noqa: C901
        if key == "type":
            names = arg if isinstance(arg, list) else [arg]
            if not all(n in _TYPES for n in names):
                raise Unsupported(f"type {arg}")
            tests = [_TYPES[n] for n in names]
            return lambda v: any(t(v) for t in tests)
        if key == "enum":
            return lambda v: any(json_equal(v, option) for option in arg)
        if key == "const":
            return lambda v: json_equal(v, arg)
        if key == "$ref":
            return self.ref(arg)
        if key in ("allOf", "anyOf", "oneOf"):
            subs = [self.compile(s) for s in arg]
            if key == "allOf":
                return lambda v: all(s(v) for s in subs)
            if key == "anyOf":
                return lambda v: any(s(v) for s in subs)
            return lambda v: sum(1 for s in subs if s(v)) == 1
        if key == "not":
            sub = self.compile(arg)
            return lambda v: not sub(v)
        if key == "if":
            cond = self.compile(arg)
            then = self.compile(schema.get("then", True))
            other = self.compile(schema.get("else", True))
            return lambda v: then(v) if cond(v) else other(v)
        if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if not _is_number(arg):
                raise Unsupported(key)
            compare = {"minimum": lambda v: v >= arg, "maximum": lambda v: v <= arg,
                       "exclusiveMinimum": lambda v: v > arg, "exclusiveMaximum": lambda v: v < arg}[key]
            return lambda v: not _is_number(v) or compare(v)
        if key in ("minLength", "maxLength"):
            fits = (lambda n: n >= arg) if key == "minLength" else (lambda n: n <= arg)
            return lambda v: not isinstance(v, str) or fits(len(v))
        if key == "pattern":
            pattern = re.compile(arg)
            return lambda v: not isinstance(v, str) or pattern.search(v) is not None
        if key in ("minItems", "maxItems"):
            fits = (lambda n: n >= arg) if key == "minItems" else (lambda n: n <= arg)
            return lambda v: not isinstance(v, list) or fits(len(v))
        if key == "uniqueItems":
            if not arg:
                return lambda v: True
            return lambda v: not isinstance(v, list) or all(
                not json_equal(v[i], v[j]) for i in range(len(v)) for j in range(i + 1, len(v)))
        if key == "items":
            sub = self.compile(arg)
            return lambda v: not isinstance(v, list) or all(sub(x) for x in v)
        if key in ("minProperties", "maxProperties"):
            fits = (lambda n: n >= arg) if key == "minProperties" else (lambda n: n <= arg)
            return lambda v: not isinstance(v, dict) or fits(len(v))
        if key == "required":
            return lambda v: not isinstance(v, dict) or all(name in v for name in arg)
        if key == "properties":
            subs = {name: self.compile(s) for name, s in arg.items()}
            return lambda v: not isinstance(v, dict) or all(sub(v[n]) for n, sub in subs.items() if n in v)
        if key == "additionalProperties":
            if "patternProperties" in schema:
                raise Unsupported("patternProperties")
            sub = self.compile(arg)
            known = set(schema.get("properties", {}))
            return lambda v: not isinstance(v, dict) or all(sub(x) for k, x in v.items() if k not in known)
        if key == "propertyNames":
            sub = self.compile(arg)
            return lambda v: not isinstance(v, dict) or all(sub(k) for k in v)
        raise Unsupported(key)


_COMPILED: dict[int, tuple[dict, Check | None]] = {}


def _plain_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value) and all(_plain_keys(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain_keys(v) for v in value)
    return True


def is_valid(schema: dict, document: Any) -> bool | None:
    """Whether ``document`` satisfies ``schema``; ``None`` where this check
    does not decide (ask jsonschema). The schema is compiled once per process."""
    entry = _COMPILED.get(id(schema))
    if entry is None or entry[0] is not schema:
        try:
            check: Check | None = _Compiler(schema).compile(schema)
        except (Unsupported, re.error):
            check = None
        entry = _COMPILED[id(schema)] = (schema, check)
    check = entry[1]
    if check is None or not _plain_keys(document):
        return None
    try:
        return check(document)
    except (TypeError, RecursionError):  # values no JSON document holds: let jsonschema say
        return None


__all__ = ["Unsupported", "is_valid", "json_equal"]
