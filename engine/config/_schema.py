"""JSON Schema validation that reports every problem at once, each with its
file, YAML line and JSON path, what was expected, what was found and a fix."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema

from aidsafe._util import paths
from aidsafe._util.errors import RecipeError
from aidsafe._util.registry import suggest
from aidsafe.config._yaml import Located, format_path


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A schema from ``schemas/`` by file name."""
    with open(paths.schemas_dir() / name, encoding="utf-8") as handle:
        return json.load(handle)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "mapping"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    # a line separator or control character in a value must not break the one-line-per-problem report
    text = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_type_of(branch: dict) -> str | None:
    declared = branch.get("type") if isinstance(branch, dict) else None
    return {"object": "mapping", "array": "list"}.get(declared, declared) if isinstance(declared, str) else None


def _scalar_form(branch: Any) -> str | None:
    """A one-value form of a ``oneOf`` in words (``"auto"``, ``an integer >=
    1``), or None for anything richer: ``threads: 0`` then reads
    ``expected an integer >= 1 or "auto"`` instead of one branch's complaint."""
    if not isinstance(branch, dict):
        return None
    if set(branch) <= {"const", "description"} and "const" in branch:
        return _short(branch["const"])
    if branch.get("type") in ("integer", "number") and set(branch) <= {"type", "minimum", "maximum", "description"}:
        text = "an integer" if branch["type"] == "integer" else "a number"
        bounds = [f">= {branch['minimum']}"] if "minimum" in branch else []
        bounds += [f"<= {branch['maximum']}"] if "maximum" in branch else []
        return " ".join([text, *bounds]) if bounds else text
    return None


def describe_error(error: jsonschema.ValidationError) -> tuple[tuple, str]:
    """Turn one jsonschema error into (path, friendly message)."""
    path = tuple(error.absolute_path)
    v = error.validator
    found = error.instance
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(found) - set(allowed)) if isinstance(found, dict) else []
        msgs = []
        for key in extra:
            hint = suggest(key, allowed)
            msgs.append((path + (key,), f"unknown key {key!r}{hint or ''}; allowed keys here: {', '.join(allowed)}"))
        if msgs:
            return msgs[0] if len(msgs) == 1 else (path, "; ".join(m for _, m in msgs))
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        desc = error.schema.get("properties", {}).get(missing, {}).get("description", "")
        return path, f"missing required key {missing!r}" + (f" ({desc})" if desc else "") + f"; add `{missing}:` here"
    if v == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return path, f"expected {expected}, found {_type_name(found)} {_short(found)}"
    if v == "enum":
        options = [str(o) for o in error.validator_value]
        return path, f"expected one of {', '.join(options)}, found {_short(found)}{suggest(str(found), options)}"
    if v == "const":
        return path, f"expected {_short(error.validator_value)}, found {_short(found)}"
    if v == "pattern":
        return path, f"{_short(found)} does not match {error.validator_value}; use letters, digits, '_' or '-'"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return path, f"expected a number with {v} {error.validator_value}, found {_short(found)}"
    if v in ("minItems", "minProperties", "minLength"):
        return path, f"must not be empty (at least {error.validator_value}), found {_short(found)}"
    if v == "oneOf" and all(_scalar_form(b) for b in error.validator_value):
        forms = " or ".join(_scalar_form(b) for b in error.validator_value)
        return path, f"expected {forms}, found {_type_name(found)} {_short(found)}"
    if v == "oneOf":
        # Report the branch meant for this kind of value (a mapping for an
        # object form), else the one whose errors go deepest.
        kind = _type_name(found)
        matching = [e for e in error.context
                    if _schema_type_of(error.validator_value[e.relative_schema_path[0]]) in (kind, None)]
        candidates = matching or list(error.context)
        best = jsonschema.exceptions.best_match(candidates) if candidates else None
        if best is not None:
            sub_path, sub_msg = describe_error(best)
            return sub_path, sub_msg
        return path, f"value {_short(found)} does not match any allowed form"
    desc = error.schema.get("description") if isinstance(error.schema, dict) else None
    return path, error.message + (f" ({desc})" if desc else "")


def schema_problems(located: Located, schema_name: str) -> list[tuple[tuple, str]]:
    """All schema problems as (json path, ``file:line path: message``)."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    problems = []
    seen = set()
    for error in sorted(validator.iter_errors(located.data), key=lambda e: list(map(str, e.absolute_path))):
        path, message = describe_error(error)
        file, line = located.where(path)
        text = f"{file}:{line} {format_path(path)}: {message}"
        if text not in seen:
            seen.add(text)
            problems.append((path, text))
    problems.sort(key=lambda item: located.where(item[0])[1])
    return problems


def validate_document(located: Located, schema_name: str) -> None:
    """Raise :class:`RecipeError` listing every schema problem, if any."""
    problems = schema_problems(located, schema_name)
    if problems:
        raise RecipeError([text for _, text in problems], source=located.file)


def raise_located(problems: list[tuple[tuple, str]], located: Located, source: str) -> None:
    """Raise :class:`RecipeError` for (json path, message) problems found
    after schema validation, each prefixed with its file and line, in line order."""
    if not problems:
        return
    texts = []
    for key_path, message in sorted(problems, key=lambda item: located.where(item[0])[1]):
        file, line = located.where(key_path)
        texts.append(f"{file}:{line} {format_path(key_path)}: {message}")
    raise RecipeError(texts, source=source)
