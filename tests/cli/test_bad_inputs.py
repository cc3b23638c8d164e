"""The bad-input table: every bad file a user can hand the CLI is one
`Error:` line on stderr (exit 1; CLI misuse exit 2), never a traceback, and
what is printed names the file, and the line where there is one.

Each row: (id, files to write into a fresh folder, CLI args, exit code, what
stderr must contain). Paths in args are relative to that folder (the test
runs in it); ``{root}`` is the project checkout.
"""

from __future__ import annotations

import re
import sys

import pytest
from click.testing import CliRunner

from aidsafe.cli._main import main

from ..conftest import MINI, ROOT


def _bomb(levels: int = 9) -> str:
    """A "billion laughs" YAML: 9 levels of 9 aliases each (340 bytes, 9**9 values expanded)."""
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        name, prev = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def _with_outputs(name: str) -> str:
    return MINI.replace('analyst: {instructions: "ANALYST: list the intents."}',
                        f'analyst: {{instructions: "ANALYST", outputs: {{"{name}": "an extra output"}}}}')


def _mini(**replace) -> str:
    text = MINI
    for old, new in replace.items():
        text = text.replace(old.replace("_", " "), new)
    return text


DEEP_BLOCK = "".join("  " * i + f"k{i}:\n" for i in range(80)) + "  " * 80 + "x: 1\n"
RUN = ["run", "recipe.yaml", "-o", "out.jsonl", "-q", "--model", "default=fake:test"]

# (id, {file: text or bytes}, args, exit code, [regexes stderr must match])
TABLE = [
    # --- item 3: YAML loading is bounded
    ("anchor-bomb", {"bomb.yaml": _bomb()}, ["validate", "bomb.yaml"], 1,
     [r"bomb\.yaml:\d+: more than 100,000 values .*alias"]),
    ("anchor-bomb-run", {"recipe.yaml": _bomb(), "in.jsonl": '{"prompt": "x"}\n'}, RUN + ["-i", "in.jsonl"], 1,
     [r"recipe\.yaml:\d+: more than 100,000 values"]),
    ("200k-keys", {"keys.yaml": "".join(f"k{i}: {i}\n" for i in range(200_000))}, ["validate", "keys.yaml"], 1,
     [r"keys\.yaml:1: [\d,]+ bytes, over the 1,000,000"]),
    ("120k-values", {"many.yaml": "name: x\nlist: [" + ",".join("0" * 120_000) + "]\n"},
     ["validate", "many.yaml"], 1, [r"many\.yaml:\d+: more than 100,000 values"]),
    ("deep-flow-nesting", {"deep.yaml": "a: " + "[" * 5000 + "]" * 5000 + "\n"}, ["validate", "deep.yaml"], 1,
     [r"deep\.yaml:1: nested too deeply"]),
    ("deep-flow-nesting-run", {"recipe.yaml": "a: " + "{x: " * 500 + "1" + "}" * 500 + "\n",
                               "in.jsonl": '{"prompt": "x"}\n'}, RUN + ["-i", "in.jsonl"], 1,
     [r"recipe\.yaml:\d+: nested (too deeply|deeper than 64)"]),
    ("deep-block-nesting", {"deep.yaml": DEEP_BLOCK}, ["validate", "deep.yaml"], 1,
     [r"deep\.yaml:\d+: nested deeper than 64 levels"]),
    # --- item 9: tracebacks that are now errors
    ("non-utf8-jsonl", {"recipe.yaml": MINI, "in.jsonl": b'{"id": "1", "prompt": "ok"}\n{"prompt": "caf\xe9"}\n'},
     RUN + ["-i", "in.jsonl"], 1, [r"in\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 16\)"]),
    ("non-utf8-csv", {"recipe.yaml": MINI, "in.csv": b"id,prompt\n1,ok\n2,caf\xe9\n"},
     RUN + ["-i", "in.csv"], 1, [r"in\.csv:3: not UTF-8 text"]),
    ("non-utf8-json-array", {"recipe.yaml": MINI, "in.json": b'[{"prompt": "caf\xe9"}]\n'},
     RUN + ["-i", "in.json"], 1, [r"in\.json:1: not UTF-8 text"]),
    ("deep-json-array", {"recipe.yaml": MINI, "in.json": "[" * 100_000 + "]" * 100_000},
     RUN + ["-i", "in.json"], 1, [r"in\.json: JSON nested too deeply to read"]),
    ("not-parquet", {"recipe.yaml": MINI, "in.parquet": b"PAR1 not really"},
     RUN + ["-i", "in.parquet"], 1, [r"in\.parquet: not a readable parquet file"]),
    ("output-named-__init__", {"recipe.yaml": _with_outputs("__init__")}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ agents\.analyst\.outputs\.__init__: output name '__init__' cannot name a field"]),
    ("output-named-class", {"recipe.yaml": _with_outputs("class")}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ agents\.analyst\.outputs\.class: .*e\.g\. `class_:`"]),
    ("output-named-with-dash", {"recipe.yaml": _with_outputs("my-field")}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ agents\.analyst\.outputs\.my-field: .*e\.g\. `my_field:`"]),
    ("show-output-named-__init__", {"recipe.yaml": _with_outputs("__init__")}, ["show", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ agents\.analyst\.outputs\.__init__"]),
    ("show-output-named-digit", {"recipe.yaml": _with_outputs("2nd")}, ["show", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ agents\.analyst\.outputs\.2nd: .*`field_2nd:`"]),
    # --- item 10: recipe checking
    ("schema-and-semantic-at-once",
     {"recipe.yaml": _mini(**{'default:_{model:_"fake:test"}': 'default: {model: "fake:test", temprature: 1}',
                              "kind:_refine": "kind: refin", "agent:_thinker": "agent: thinkr"})},
     ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml: 3 problem", r"recipe\.yaml:4 models\.default\.temprature: unknown key",
      r"recipe\.yaml:\d+ stages\[1\]\.agent: unknown agent 'thinkr'", r"stages\[3\]\.kind: unknown stage kind 'refin'"]),
    ("duplicate-key", {"recipe.yaml": MINI + "name: again\n"}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ name: duplicate key 'name' \(first at line 2\)"]),
    ("duplicate-nested-key", {"recipe.yaml": MINI.replace("  thinker:", "  analyst: {instructions: x}\n  thinker:")},
     ["validate", "recipe.yaml"], 1, [r"recipe\.yaml:8 agents\.analyst: duplicate key 'analyst' \(first at line 7\)"]),
    ("key-not-text", {"recipe.yaml": MINI.replace("  thinker:", "  1: {instructions: x}\n  thinker:")},
     ["validate", "recipe.yaml"], 1, [r"recipe\.yaml:8 agents: the key '1' is read as int, not text"]),
    ("prompts-outside", {"recipe.yaml": MINI + "prompts: /etc\n"}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ prompts: prompts folder '/etc' resolves to /etc, outside the allowed folders"]),
    ("prompts-missing", {"recipe.yaml": MINI + "prompts: nowhere\n"}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ prompts: .*nowhere/prompts\.json not found"]),
    ("prompts-bad-json", {"recipe.yaml": MINI + "prompts: p\n", "p/prompts.json": "{not json"},
     ["validate", "recipe.yaml"], 1, [r"recipe\.yaml:\d+ prompts: .*prompts\.json: not readable JSON"]),
    ("prompts-unknown-agent", {"recipe.yaml": MINI + "prompts: p\n", "p/prompts.json": '{"agents": {"ghost": {}}}'},
     ["validate", "recipe.yaml"], 1, [r"recipe\.yaml:\d+ prompts: .*agent\(s\) ghost are not in the recipe"]),
    ("required-fields-typo",
     {"recipe.yaml": MINI.replace("filters: [{type: dedupe}]", "filters: [{type: required_fields, fields: [respones]}]")},
     ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:\d+ stages\[3\]\.filters\[0\]\.fields\[0\]: no record field 'respones' .*did you mean 'response'"]),
    ("extends-cycle", {"a.yaml": "extends: b.yaml\n", "b.yaml": "# b\nextends: a.yaml\n"}, ["validate", "a.yaml"], 1,
     [r"b\.yaml:2 extends: an extends cycle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"]),
    ("extends-outside", {"child.yaml": "name: c\nextends: ../../../../../../etc/passwd\n"},
     ["validate", "child.yaml"], 1, [r"child\.yaml:2 extends: .*outside the allowed folders"]),
    ("extends-missing", {"child.yaml": "extends: nowhere.yaml\n"}, ["validate", "child.yaml"], 1,
     [r"child\.yaml:1 extends: 'nowhere\.yaml' not found"]),
    ("extends-name-too-long", {"child.yaml": f"extends: {'x' * 300}.yaml\n"}, ["validate", "child.yaml"], 1,
     [r"child\.yaml:1 extends: .*(not found|not a usable file name)"]),
    ("extends-nul-byte", {"child.yaml": 'extends: "a\\0b.yaml"\n'}, ["validate", "child.yaml"], 1,
     [r"child\.yaml:1 extends: .*'a\\x00b\.yaml' is not a usable file name"]),
    ("policies-name-too-long", {"recipe.yaml": MINI.replace("policies: aidsafe", f"policies: {'p' * 300}")},
     ["validate", "recipe.yaml"], 1, [r"recipe\.yaml:\d+ policies: policy set 'p+' is not a usable file name"]),
    ("extends-not-text", {"child.yaml": "extends: [a, b]\n"}, ["validate", "child.yaml"], 1,
     [r"child\.yaml:1 extends: expected a path string"]),
    ("non-utf8-recipe", {"recipe.yaml": b"name: caf\xe9\n"}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:1: not UTF-8 text \(byte 0xe9 at column 10"]),
    ("non-utf8-parent", {"child.yaml": "extends: base.yaml\n", "base.yaml": b"# x\nname: caf\xe9\n"},
     ["validate", "child.yaml"], 1, [r"base\.yaml:2: not UTF-8 text"]),
    # --- bad inputs the project already handled
    *[(f"invalid-recipes/{path.name}", {}, ["validate", str(path)], 1,
       [re.escape(line.split(":", 1)[1].strip()) for line in path.read_text().splitlines()
        if line.startswith("# expect:")])
      for path in sorted((ROOT / "tests" / "invalid_recipes").glob("*.yaml"))],
    ("yaml-syntax", {"recipe.yaml": "name: x\nmodels:\n  default: {model: a\nstages: []\n"},
     ["validate", "recipe.yaml"], 1, [r"recipe\.yaml:\d+: YAML syntax error"]),
    ("python-tag", {"recipe.yaml": "name: !!python/object/apply:os.system ['true']\n"},
     ["validate", "recipe.yaml"], 1, [r"recipe\.yaml:1: YAML syntax error"]),
    ("top-level-list", {"recipe.yaml": "- a\n- b\n"}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:1 \(top level\): expected a mapping"]),
    ("empty-recipe", {"recipe.yaml": ""}, ["validate", "recipe.yaml"], 1,
     [r"recipe\.yaml:1 \(top level\): expected a mapping"]),
    ("recipe-is-a-folder", {"recipes.yaml/x": ""}, ["validate", "recipes.yaml"], 1, [r"recipes\.yaml"]),
    ("recipe-not-found", {}, ["validate", "nope.yaml"], 1, [r"nope\.yaml.* not found"]),
    ("input-not-found", {"recipe.yaml": MINI}, RUN + ["-i", "missing.jsonl"], 1, [r"missing\.jsonl' not found"]),
    ("input-format", {"recipe.yaml": MINI, "in.txt": "x"}, RUN + ["-i", "in.txt"], 1,
     [r"in\.txt: unsupported input format \.txt"]),
    ("input-json-invalid", {"recipe.yaml": MINI, "in.json": '[{"prompt": "x"},]'}, RUN + ["-i", "in.json"], 1,
     [r"in\.json: not valid JSON"]),
    # --- misuse: exit 2
    ("validate-without-args", {}, ["validate"], 2, [r"Missing argument"]),
    ("run-without-output", {"recipe.yaml": MINI, "in.jsonl": '{"prompt": "x"}\n'},
     ["run", "recipe.yaml", "-i", "in.jsonl"], 2, [r"--output is required"]),
]


def _write(folder, files):
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _check(result, code, patterns):
    stderr = result.stderr
    assert "Traceback" not in result.output and "Traceback" not in stderr, stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}"
    error_lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, stderr
    for pattern in patterns:
        assert re.search(pattern, stderr), f"{pattern!r} not in:\n{stderr}"


@pytest.mark.parametrize("files, args, code, patterns", [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_bad_input_is_one_error_line(fake, tmp_path, monkeypatch, files, args, code, patterns):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, files)
    result = CliRunner().invoke(main, [a.format(root=ROOT) for a in args])
    _check(result, code, patterns)


def test_parquet_input_without_pyarrow_is_an_error(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, {"recipe.yaml": MINI, "in.parquet": b"PAR1"})
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the export extra were not installed
    result = CliRunner().invoke(main, RUN + ["-i", "in.parquet"])
    _check(result, 1, [r"in\.parquet: reading parquet needs pyarrow; install the export extra"])


def test_bounded_yaml_errors_stop_at_the_bound(tmp_path, monkeypatch):
    """The audit's anchor bomb took 13 s (a 9-level one >120 s), 200k keys hung.
    Asserted on the work, not the clock (performance/yaml_bench.py times it):
    a file over the byte bound is never parsed, an alias bomb is never
    expanded (nothing is constructed), and the walk stops at MAX_NODES."""
    from itertools import islice, product
    from string import ascii_lowercase

    import yaml

    from aidsafe._util.errors import RecipeError
    from aidsafe.config import _yaml
    from aidsafe.config._recipe import load_recipe

    work = {"nodes": 0, "constructed": 0}
    node_init = yaml.nodes.Node.__init__

    def counting_init(self, *args, **kwargs):
        work["nodes"] += 1
        node_init(self, *args, **kwargs)

    def construct(*args, **kwargs):
        work["constructed"] += 1
        raise AssertionError("a file over a bound must not be constructed")

    monkeypatch.setattr(yaml.nodes.Node, "__init__", counting_init)
    monkeypatch.setattr(yaml.constructor.BaseConstructor, "construct_document", construct)
    cases = {"bomb.yaml": (_bomb(), "more than 100,000 values", 200),
             "keys.yaml": ("".join(f"k{i}: {i}\n" for i in range(200_000)), "bytes, over the 1,000,000", 0),
             "short-keys.yaml": ("".join(f"{''.join(k)}: 0\n" for k in islice(product(ascii_lowercase, repeat=4),
                                                                               110_000)),
                                 "more than 100,000 values", 2 * 110_000 + 2)}
    for name, (text, bound, most_nodes) in cases.items():
        (tmp_path / name).write_text(text)
        work.update(nodes=0, constructed=0)
        with pytest.raises(RecipeError, match=rf"{re.escape(name)}:\d+") as info:
            load_recipe(tmp_path / name)
        assert bound in str(info.value), name
        # the bomb's 9**9 values are never built: only its ~90 written nodes are
        assert work["nodes"] <= most_nodes and work["constructed"] == 0, (name, work)
    assert _yaml.MAX_NODES == 100_000


def test_extends_by_name_resolves_in_the_shipped_recipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, {"mine.yaml": "extends: aidsafe\nstages: {deliberation: {stop: {max_rounds: 1}}}\n"})
    result = CliRunner().invoke(main, ["validate", "mine.yaml"])
    assert result.exit_code == 0, result.output
    assert "mine.yaml: ok (6 stages" in result.output


def test_a_deeply_nested_jsonl_row_is_a_failed_record(tmp_path):
    from aidsafe.runtime._records import read_inputs

    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "fine"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    assert [r.error for r in read_inputs(path)] == [
        None, "line 2: JSON nested too deeply to read; flatten or remove the line"]
