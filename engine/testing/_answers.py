"""Scripted answers: the one answer synthesis behind the fake engine
(:mod:`aidsafe.testing.fake`, which ``aidsafe run --dry-run`` runs on) and
the mock server (:mod:`aidsafe.testing.mock_server`).

Given the output fields a DSPy prompt asks for (their types and
descriptions), :class:`Script` answers a schema-valid value for each. Every
choice is deterministic in the request: a hash of the conversation (the
record's values are in it) and the field's name picks

* an enum (``Literal[...]``, a JSON-schema ``enum``, or a description such as
  "Exactly one of: A, B, tie." or "plain or deliberate.") among its values;
* a boolean, true or false;
* an integer within the range its description or schema gives ("A single
  integer from 1 to 5", "1-5: ...", ``minimum``/``maximum``), else 1-5, so a
  judge's score is always a valid 1-5 score;
* a float among 0.1, 0.3, 0.5, 0.7 and 0.9.

So over a handful of records every value of a two- or three-way choice comes
up, and every branch that depends on one is taken on some record. Text is
``mock <field> <8 hex digits>`` (a list item has its own digits), so a
scripted value is unmistakable in a record; a ``response`` (or
``revised_response``) declines on some records (it ends with
``: I can't help with that.``), so a check of the response against the
record's decision passes on some and fails on others.

Standard library only: the mock server must run without DSPy installed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from typing import Any

from aidsafe.testing._prompt import output_field_docs

#: The version of these answers: part of the scripted model's identity (its
#: cache key), so a change here never serves answers cached before it.
SCRIPT_VERSION = 1
#: What a scripted response that declines ends with (the refusal classifier
#: reads it as a full refusal), so a `behavior` check passes on some records.
REFUSAL = "I can't help with that."
#: Floats a scripted answer picks among.
FLOATS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: The integer range when neither the description nor a schema gives one
#: (the judges' and the gate's 1-5 scale).
DEFAULT_RANGE = (1, 5)
_NONE_TYPES = {"none", "nonetype"}


def digest(*parts: str) -> str:
    """sha256 hex of ``parts`` (separated, so ``("ab", "c") != ("a", "bc")``)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()


def split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside brackets and quotes (for type strings)."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    escaped = False
    current: list[str] = []
    for ch in text:
        if quote:
            current.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    tail = "".join(current).strip()
    if tail or parts:
        parts.append(tail)
    return parts


# "from 1 to 5", "1 (fails) to 5 (passes)", "1-5", "0 to 10"
_RANGE = re.compile(r"(?<![\w.])(-?\d+)(?:\s*\([^)]*\))?\s*(?:-|–|to)\s*(-?\d+)(?![\w.])")
_EXACTLY = re.compile(r"exactly one of:?\s*(.+?)\.?\s*$", re.I | re.S)
_ALTERNATIVES = re.compile(r"^\s*([\w-]+(?:\s*,\s*[\w-]+)*)\s*,?\s+or\s+([\w-]+)\s*\.?\s*$")
_LABELLED = re.compile(r"^\s*([\w-]+):\s")


def int_range(desc: str) -> tuple[int, int] | None:
    """The integer range a field's description names, or None."""
    match = _RANGE.search(desc or "")
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        if low < high <= low + 100:
            return low, high
    return None


def choices(desc: str) -> list[str] | None:
    """The values a text field's description allows, or None: "Exactly one
    of: A, B, tie.", "plain or deliberate.", or "answer: ...; decline: ..."."""
    desc = (desc or "").strip()
    match = _EXACTLY.search(desc)
    if match:
        values = [v.strip().strip("`'\"") for v in re.split(r",|\bor\b", match.group(1))]
        values = [v for v in values if v]
        return values if len(values) > 1 else None
    match = _ALTERNATIVES.match(desc)
    if match:
        return [v.strip() for v in match.group(1).split(",")] + [match.group(2)]
    pieces = [p for p in desc.split(";") if p.strip()]
    labelled = [_LABELLED.match(p) for p in pieces]
    if len(pieces) > 1 and all(labelled):
        return [m.group(1) for m in labelled]
    return None


class Script:
    """Scripted values for one request, deterministic in ``seed`` (a hash of
    the request's conversation)."""

    def __init__(self, seed: str):
        self.seed = seed

    def pick(self, key: str, count: int) -> int:
        """An index below ``count`` for ``key`` (a field name or path)."""
        return int(digest(self.seed, key, "pick")[:12], 16) % count

    def text(self, key: str) -> str:
        """``mock <key> <8 hex digits>``; the digits are never all decimal
        (a judge's reason must read as words, not a number)."""
        hexits = digest(self.seed, key)[:8]
        if hexits.isdigit():
            hexits = "abcdef"[int(hexits[0]) % 6] + hexits[1:]
        return f"mock {key.split('.')[0]} {hexits}"

    def integer(self, key: str, bounds: tuple[int, int] | None = None) -> int:
        low, high = bounds or DEFAULT_RANGE
        return low + self.pick(key, high - low + 1)

    def fields(self, docs: dict[str, tuple[str, str]], notes: dict[str, dict] | None = None) -> dict[str, Any]:
        """A value for every field of ``docs`` (``{name: (type text,
        description)}``); a field with a JSON-schema note answers a value
        valid against it."""
        notes = notes or {}
        out = {}
        for name, (type_text, desc) in docs.items():
            if name in notes:
                note = notes[name]
                out[name] = self.from_schema(note, name, note.get("$defs") or note.get("definitions") or {})
            else:
                out[name] = self.value(type_text, name, desc)
        return out

    def value(self, type_text: str, key: str, desc: str = "", depth: int = 0) -> Any:
        """A value of the Python type named by ``type_text`` (as DSPy prints
        it). Unknown names (e.g. a pydantic model without a schema note) get
        text, the best guess available."""
        type_text = type_text.strip()
        if depth > 8 or not type_text:
            return self.text(key)
        # PEP 604 unions ("int | None"): the first non-None member.
        members = split_top_level(type_text, "|")
        if len(members) > 1:
            non_none = [m for m in members if m.lower() not in _NONE_TYPES]
            return self.value(non_none[0], key, desc, depth + 1) if non_none else None
        match = re.fullmatch(r"([\w.]+)\[(.*)\]", type_text, re.S)
        name, args = (match.group(1), split_top_level(match.group(2), ",")) if match else (type_text, [])
        base = name.rsplit(".", 1)[-1].lower()
        if base == "optional" and args:
            return self.value(args[0], key, desc, depth + 1)
        if base == "union" and args:
            non_none = [a for a in args if a.lower() not in _NONE_TYPES]
            return self.value(non_none[0], key, desc, depth + 1) if non_none else None
        if base == "literal" and args:
            chosen = args[self.pick(key, len(args))]
            try:
                return ast.literal_eval(chosen)
            except (ValueError, SyntaxError):
                return chosen.strip("'\"")
        if base == "tuple" and args and not (len(args) == 2 and args[1] == "..."):
            return [self.value(a, f"{key}.{i + 1}", "", depth + 1) for i, a in enumerate(args)]
        if base in ("list", "sequence", "set", "frozenset", "tuple", "iterable"):
            inner = args[0] if args else "str"
            return [self.value(inner, f"{key}.{i}", "", depth + 1) for i in (1, 2)]
        if base in ("dict", "mapping"):
            if len(args) == 2 and args[0].strip().lower() == "str":
                return {"key": self.value(args[1], f"{key}.key", "", depth + 1)}
            return {}
        if base in ("str", "string"):
            options = choices(desc)
            if options:
                return options[self.pick(key, len(options))]
            bounds = int_range(desc) if re.search(r"\binteger\b", desc or "", re.I) else None
            if bounds:
                return str(self.integer(key, bounds))
            if key == "response" or key.endswith("_response"):  # answers some records, declines others
                return self.text(key) + (f": {REFUSAL}" if self.pick(f"{key}.refuses", 2) else "")
            return self.text(key)
        if base == "bool":
            return self.pick(key, 2) == 0
        if base == "int":
            return self.integer(key, int_range(desc))
        if base == "float":
            return FLOATS[self.pick(key, len(FLOATS))]
        if base in _NONE_TYPES:
            return None
        return self.text(key)

    def from_schema(self, schema: Any, key: str, defs: dict, depth: int = 0) -> Any:
        """A value valid against a (pydantic-style) JSON schema."""
        if depth > 12 or not isinstance(schema, dict):
            return self.text(key)
        if "$ref" in schema:
            ref = str(schema["$ref"]).rsplit("/", 1)[-1]
            return self.from_schema(defs.get(ref, {}), key, defs, depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][self.pick(key, len(schema["enum"]))]
        for combinator in ("anyOf", "oneOf", "allOf"):
            options = schema.get(combinator)
            if isinstance(options, list) and options:
                non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
                return self.from_schema((non_null or options)[0], key, defs, depth + 1)
        typ = schema.get("type")
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "null")
        if typ is None:
            typ = "object" if "properties" in schema else "string"
        if typ == "string":
            return self.text(key)
        if typ == "integer":
            low, high = schema.get("minimum"), schema.get("maximum")
            bounds = (int(low), int(high)) if isinstance(low, int) and isinstance(high, int) and low <= high else None
            return self.integer(key, bounds)
        if typ == "number":
            return FLOATS[self.pick(key, len(FLOATS))]
        if typ == "boolean":
            return self.pick(key, 2) == 0
        if typ == "null":
            return None
        if typ == "array":
            prefix = schema.get("prefixItems")
            if isinstance(prefix, list) and prefix:
                return [self.from_schema(s, f"{key}.{i + 1}", defs, depth + 1) for i, s in enumerate(prefix)]
            # Two items, unless the schema bounds the length otherwise.
            count = max(int(schema.get("minItems", 0)), min(2, int(schema.get("maxItems", 2))))
            return [self.from_schema(schema.get("items", {}), f"{key}.{i + 1}", defs, depth + 1)
                    for i in range(count)]
        if typ == "object":
            props = schema.get("properties")
            if isinstance(props, dict) and props:
                return {k: self.from_schema(v, f"{key}.{k}", defs, depth + 1) for k, v in props.items()}
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                return {"key": self.from_schema(extra, f"{key}.key", defs, depth + 1)}
            return {}
        return self.text(key)


_SCHEMA_NOTE = re.compile(r"\{(\w+)\}\s+# note: the value you produce must adhere to the JSON schema: (.*)$", re.M)


def schema_notes(system: str) -> dict[str, dict]:
    """Per-field JSON schemas DSPy writes as "# note: ... JSON schema: {...}".

    ChatAdapter writes the schema raw; JSONAdapter writes it inside a JSON
    string (escaped quotes, trailing ``",``), so both spellings are tried.
    """
    notes: dict[str, dict] = {}
    for m in _SCHEMA_NOTE.finditer(system):
        raw = m.group(2).strip()
        candidates = [raw]
        escaped = raw.rstrip(",").strip()
        if escaped.endswith('"'):
            escaped = escaped[:-1]
        try:
            candidates.append(json.loads(f'"{escaped}"'))
        except ValueError:
            pass
        for candidate in candidates:
            try:
                schema = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(schema, dict):
                notes[m.group(1)] = schema
                break
    return notes


def conversation_seed(system: str, user: str) -> str:
    """The seed of a request: its system text and its user text (the
    record's values), as both doubles see them."""
    return digest(system, user)


def answer_fields(system: str, user: str) -> dict[str, Any]:
    """A scripted value for every output field the system prompt lists
    (``{}`` when it lists none)."""
    return Script(conversation_seed(system, user)).fields(output_field_docs(system), schema_notes(system))


__all__ = ["DEFAULT_RANGE", "FLOATS", "REFUSAL", "SCRIPT_VERSION", "Script", "answer_fields", "choices", "conversation_seed", "digest",
           "int_range", "schema_notes", "split_top_level"]
