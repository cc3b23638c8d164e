"""Docs that cannot drift. The README's recipe reference, stage-kind tables,
agreement-rule table and filter list are read as tables and checked against
the recipe schema and the registries in both directions: every key, kind,
rule and filter is documented, and nothing is documented that does not
exist. Each check is shown to fail on a copy of the README with a row
removed or a row made up."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner

from aidsafe.cli._main import main
from aidsafe.pipeline.stages import FILTERS, STAGES
from aidsafe.pipeline.stages._deliberate import RULES

from .conftest import ROOT

README_PATH = ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
SCHEMA = json.loads((ROOT / "schemas" / "recipe.schema.json").read_text(encoding="utf-8"))
DEFS = SCHEMA["$defs"]
IDENT = r"[A-Za-z_$][A-Za-z0-9_]*"


# ---------------------------------------------------------------- reading the README

def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole line) up to the next heading of the same or a higher level."""
    match = re.search(rf"^{re.escape(heading)}\s*$", text, re.M)
    assert match, f"README has no heading {heading!r}"
    level = len(heading) - len(heading.lstrip("#"))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def tables(text: str, header: str) -> list[list[str]]:
    """The rows (cells, stripped) of every markdown table in ``text`` whose
    header line starts with ``header`` (e.g. ``"| kind |"``)."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith(header):
            inside = True
            continue
        if inside and line.startswith("|"):
            if not re.fullmatch(r"\|[\s\-|:]+\|", line):
                rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        else:
            inside = False
    return rows


def ticked(cell: str) -> str:
    """The text of a cell that is one `code` span, else ''."""
    match = re.fullmatch(r"`([^`]+)`", cell.strip())
    return match.group(1) if match else ""


def keys_in(text: str) -> set[str]:
    """Names a piece of README text writes as keys: a code span that is one
    name (`field`), or the names before a colon or inside braces in one
    (`stop: {...}`, `{rule, k, agent}`, `agreement: {rule, k, agent}`)."""
    names = set()
    for span in re.findall(r"`([^`]+)`", text):
        if re.fullmatch(IDENT, span):
            names.add(span)
            continue
        if not re.match(rf"\s*(\{{|{IDENT}\s*:)", span):
            continue  # a command line, a path, a value: not keys
        names.update(re.findall(rf"({IDENT})\s*:", span))
        for inner in re.findall(r"\{([^{}]*)\}", span):
            names.update(n.strip() for n in inner.split(",") if re.fullmatch(IDENT, n.strip()))
    return names


# ---------------------------------------------------------------- reading the schema

def resolve(node):
    while isinstance(node, dict) and "$ref" in node:
        node = DEFS[node["$ref"].rsplit("/", 1)[-1]]
    return node


def objects(node, skip=()) -> list[dict]:
    """Every object schema reachable from ``node`` through ``oneOf``/``anyOf``,
    ``items``, ``additionalProperties`` and ``$ref`` (not through properties)."""
    node = resolve(node)
    out = []
    if not isinstance(node, dict):
        return out
    if "properties" in node:
        out.append(node)
    for key in ("oneOf", "anyOf"):
        for option in node.get(key, []):
            out += objects(option, skip)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out += objects(node[key], skip)
    return out


def known_words(node, skip=(), seen=None) -> set[str]:
    """Everything the schema under ``node`` names: property names, enum
    values, constants and the `code` spans of its descriptions (defaults
    such as `id`, record fields it mentions)."""
    seen = set() if seen is None else seen
    words: set[str] = set()
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen and name not in skip:
                seen.add(name)
                words |= known_words(DEFS[name], skip, seen)
        for name, sub in node.get("properties", {}).items():
            words.add(name)
            words |= known_words(sub, skip, seen)
        words |= {str(v) for v in node.get("enum", [])}
        if "const" in node:
            words.add(str(node["const"]))
        if isinstance(node.get("description"), str):
            words |= keys_in(node["description"]) | set(re.findall(r"`(" + IDENT + r")", node["description"]))
        for key, value in node.items():
            if key not in ("properties", "$ref") and isinstance(value, (dict, list)):
                words |= known_words(value, skip, seen)
    elif isinstance(node, list):
        for item in node:
            words |= known_words(item, skip, seen)
    return words


def listed(description: str) -> set[str]:
    """The names a schema description lists: "a, b, c (or one a plugin adds)."."""
    text = description.split(":", 1)[-1].split("(or one a plugin adds)")[0]
    return {w.strip(" .") for w in text.split(",") if w.strip(" .")}


# ---------------------------------------------------------------- the checks

def builtin(registry) -> list[str]:
    """The registry's names that this package defines (a plugin installed
    next to it, or one a test registered, documents itself)."""
    return [name for name in registry.names() if registry.get(name).__module__.startswith("aidsafe.")]


# Words the reference may name in a key's row besides the schema's: the
# record's fields and the commands it points to.
RECORD_AND_COMMANDS = {"cot", "extra", "meta", "record", "eval", "export", "view", "explain", "show", "aidsafe"}
# Each row's keys and what they cover: the filters' own keys are checked
# against the filter list instead.
SUB_KEYS_SKIP = {"stages": ("filter",)}


def reference_problems(text: str) -> list[str]:
    """The Recipe reference table against the schema's top-level keys and
    each key's own keys."""
    rows = tables(section(text, "### Recipe reference"), "| key |")
    problems = []
    documented = {ticked(r[0]): r for r in rows if ticked(r[0])}
    for key in SCHEMA["properties"]:
        if key not in documented:
            problems.append(f"recipe reference: top-level key `{key}` (in the schema) has no row")
    for key, row in documented.items():
        if key not in SCHEMA["properties"]:
            problems.append(f"recipe reference: row `{key}` is not a key of the schema")
            continue
        node = SCHEMA["properties"][key]
        skip = SUB_KEYS_SKIP.get(key, ())
        named = keys_in(" ".join(row[1:]))
        own = set()
        for obj in objects(node):
            own |= set(obj.get("properties", {}))
        if key == "stages":  # a stage's keys, its stop and agreement keys, a gate check's, a branch's
            own |= set(DEFS["stage"]["properties"]) | set(DEFS["stop"]["properties"]) | {"after"}
            own |= set(DEFS["stop"]["properties"]["agreement"]["properties"]) | set(DEFS["branch"]["properties"])
            own |= set(DEFS["stage"]["properties"]["checks"]["items"]["properties"])
        for name in sorted(own - named):
            problems.append(f"recipe reference: `{key}` row does not name its key `{name}`")
        for name in sorted(named - known_words(node, skip) - RECORD_AND_COMMANDS - {"branch", "name", "when"}):
            problems.append(f"recipe reference: `{key}` row names `{name}`, which the schema does not know there")
    return problems


def stage_kind_problems(text: str) -> list[str]:
    """Every stage-kind table (Stage kinds, and belief/pair under Preference
    pairs) against the registry and the schema."""
    rows = tables(text, "| kind | agents |")
    documented = {ticked(r[0]): r for r in rows if ticked(r[0])}
    problems = [f"stage kinds: `{kind}` (registered) has no row in a stage-kind table"
                for kind in builtin(STAGES) if kind not in documented]
    problems += [f"stage kinds: row `{kind}` is not a registered stage kind"
                 for kind in documented if kind not in builtin(STAGES)]
    stage_keys = set(DEFS["stage"]["properties"])
    for kind, row in documented.items():
        for span in re.findall(r"`([^`]+)`", row[1]):
            name = re.match(IDENT, span)
            if name and name.group(0) not in stage_keys:
                problems.append(f"stage kinds: `{kind}` names the stage key `{name.group(0)}`, not in the schema")
    in_schema = listed(DEFS["stage"]["properties"]["kind"]["description"])
    if in_schema != set(builtin(STAGES)):
        problems.append(f"schema: stage.kind's description lists {sorted(in_schema)}, the registry has "
                        f"{sorted(builtin(STAGES))}")
    return problems


def agreement_problems(text: str) -> list[str]:
    """The agreement-rule table against the deliberate stage's rules and the schema."""
    rows = tables(text, "| rule | stops when |")
    problems = []
    documented = {}
    for row in rows:
        match = re.fullmatch(r"`\{rule: (\w+)((?:, \w+: \w+)*)\}`", row[0])
        if not match:
            problems.append(f"agreement rules: row {row[0]!r} is not written `{{rule: NAME, key: VALUE}}`")
            continue
        documented[match.group(1)] = {k.split(":")[0].strip() for k in match.group(2).split(",") if k.strip()}
    schema_rules = set(DEFS["stop"]["properties"]["agreement"]["properties"]["rule"]["enum"])
    for rule in sorted(set(RULES) | schema_rules):
        if rule not in documented:
            problems.append(f"agreement rules: rule `{rule}` has no row")
    for rule, keys in documented.items():
        if rule not in RULES or rule not in schema_rules:
            problems.append(f"agreement rules: row `{rule}` is not a rule of the deliberate stage and the schema")
        elif keys != set(RULES[rule]):
            problems.append(f"agreement rules: `{rule}` row shows keys {sorted(keys)}, the rule takes "
                            f"{sorted(RULES[rule])}")
    return problems


def filter_list(text: str) -> dict[str, set[str]]:
    """The Filters paragraph under Stage kinds as ``{filter: its keys}``."""
    body = section(text, "### Stage kinds")
    start = body.index("\nFilters: ")
    paragraph = body[start:body.index("\n\n", start + 1)]
    out = {}
    # `name` (...) items: the name, then its parenthesised note up to the next item
    for match in re.finditer(r"`(\w+)`\s*\(((?:[^()]|\([^()]*\))*)\)", paragraph):
        out[match.group(1)] = {k for k in keys_in(match.group(2)) if not k.isupper()}
    return out


def filter_problems(text: str) -> list[str]:
    """The Filters paragraph against the filter registry and the schema's
    filter keys (each key's description says which filters take it)."""
    documented = filter_list(text)
    problems = [f"filters: `{name}` (registered) is not in the Filters list" for name in builtin(FILTERS)
                if name not in documented]
    problems += [f"filters: `{name}` in the Filters list is not a registered filter" for name in documented
                 if name not in builtin(FILTERS)]
    takes: dict[str, set[str]] = {name: set() for name in builtin(FILTERS)}
    for key, sub in DEFS["filter"]["properties"].items():
        if key == "type":
            continue
        for piece in sub["description"].split(";"):
            head = piece.split(":", 1)[0]
            for name in re.findall(r"\w+", head):
                if name in takes:
                    takes[name].add(key)
    for name, keys in documented.items():
        if name not in takes:
            continue
        for key in sorted(takes[name] - keys):
            problems.append(f"filters: `{name}` takes `{key}` (schema), the Filters list does not say so")
        # values its note names (a decision, a status) and its own name (in a quoted message) are not keys
        for key in sorted(keys - takes[name] - {"decline", "answer", "label", "unknown", "filtered", name}):
            problems.append(f"filters: `{name}` is documented with `{key}`, which the schema does not give it")
    in_schema = listed(DEFS["filter"]["properties"]["type"]["description"])
    if in_schema != set(builtin(FILTERS)):
        problems.append(f"schema: filter.type's description lists {sorted(in_schema)}, the registry has "
                        f"{sorted(builtin(FILTERS))}")
    return problems


def readme_problems(text: str) -> list[str]:
    return reference_problems(text) + stage_kind_problems(text) + agreement_problems(text) + filter_problems(text)


# ---------------------------------------------------------------- the tests

def test_the_readme_reference_matches_the_schema_and_the_registries():
    assert readme_problems(README) == []


def test_a_plugin_kind_is_not_asked_of_the_readme():
    from aidsafe.pipeline.stages._base import Filter, filter_kind

    @filter_kind("docs_test_only")
    class Only(Filter):
        def apply(self, thoughts, state, ctx):
            return thoughts, [], None

    try:
        assert "docs_test_only" in FILTERS.names() and "docs_test_only" not in builtin(FILTERS)
        assert readme_problems(README) == []
    finally:
        FILTERS.unregister("docs_test_only")


def _without_row(text: str, first_cell: str) -> str:
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(f"| {first_cell} |")]
    assert len(kept) == len(lines) - 1, first_cell
    return "".join(kept)


@pytest.mark.parametrize("first_cell, expected", [
    ("`output`", "top-level key `output` (in the schema) has no row"),
    ("`gate`", "`gate` (registered) has no row"),
    ("`pair`", "`pair` (registered) has no row"),
    ("`{rule: majority}`", "rule `majority` has no row"),
])
def test_a_removed_table_row_fails_the_doc_check(tmp_path, first_cell, expected):
    copy = tmp_path / "README.md"
    copy.write_text(_without_row(README, first_cell), encoding="utf-8")
    problems = readme_problems(copy.read_text(encoding="utf-8"))
    assert any(expected in p for p in problems), problems


def test_a_removed_filter_or_key_fails_the_doc_check(tmp_path):
    copy = tmp_path / "README.md"
    text = README.replace("`near_duplicate` (`threshold`, difflib", "`near_duplicate` (difflib")
    text = text.replace("`concurrency`, ", "")
    assert text != README
    copy.write_text(text, encoding="utf-8")
    problems = readme_problems(copy.read_text(encoding="utf-8"))
    assert "filters: `near_duplicate` takes `threshold` (schema), the Filters list does not say so" in problems
    assert "recipe reference: `models` row does not name its key `concurrency`" in problems
    dropped = README.replace("`max_thoughts` (`max`), ", "")
    assert "filters: `max_thoughts` (registered) is not in the Filters list" in readme_problems(dropped)


def test_documenting_what_does_not_exist_fails_the_doc_check():
    made_up = {
        "| `output` |": ("| `outputs` | typo |\n", "row `outputs` is not a key of the schema"),
        "| `predict` |": ("| `classify` | `agent` | query | label | made up |\n", "row `classify` is not a registered"),
        "| `{rule: majority}` |": ("| `{rule: unanimous}` | made up |\n", "row `unanimous` is not a rule"),
    }
    for anchor, (row, expected) in made_up.items():
        text = README.replace(anchor, row + anchor, 1)
        assert any(expected in p for p in readme_problems(text)), expected
    text = README.replace("`max_thoughts` (`max`)", "`max_thoughts` (`max`), `shorten` (`to`)")
    assert "filters: `shorten` in the Filters list is not a registered filter" in readme_problems(text)
    text = README.replace("`seed`, `concurrency`", "`seed`, `sead`, `concurrency`")
    assert "recipe reference: `models` row names `sead`, which the schema does not know there" in readme_problems(text)


def test_every_schema_property_has_a_description():
    def walk(node, path):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub or "$ref" in sub or "oneOf" in sub or name in ("rule", "k", "before", "after"), \
                    f"{path}.{name} has no description"
                walk(sub, f"{path}.{name}")
            for key in ("$defs", "additionalProperties", "items"):
                if isinstance(node.get(key), dict):
                    for sub_name, sub in (node[key].items() if key == "$defs" else [(key, node[key])]):
                        walk(sub, f"{path}.{sub_name}")

    walk(SCHEMA, "recipe")


def test_every_command_is_in_the_cli_reference():
    def commands(group, prefix=""):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):  # the lazy group imports each command here
            command = group.get_command(ctx, name)
            assert command is not None, name
            yield prefix + name
            if isinstance(command, click.Group):
                yield from commands(command, prefix + name + " ")

    names = list(commands(main))
    assert "validate" in names and "cache stats" in names
    reference = section(README, "## CLI reference")
    for name in names:
        assert f"aidsafe {name.split()[0]}" in reference, name
    help_text = CliRunner().invoke(main, ["run", "--help"]).output
    for option in ("--plan", "--dry-run", "--model", "--workers", "--max-failures", "--no-cache", "--cache-dir",
                   "--keep-failed", "--force-restart"):
        assert option in help_text and option in reference, option
