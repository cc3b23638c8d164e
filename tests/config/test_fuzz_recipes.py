"""A property-based fuzzer for recipes (hypothesis).

Each example mutates a shipped recipe (dropped and renamed keys, wrong
types, random scalars, deep nesting, aliases, odd unicode, bad ``extends``,
duplicated lines, stray bytes), writes it and loads it as ``aidsafe validate``
does (a refused one also through ``aidsafe validate``: one ``Error:`` line);
a recipe that loads is also compiled as ``aidsafe show`` does. Every
outcome must be a loaded recipe or the project's error type with every
problem on ``file:line``: never another exception, never longer than 5 s.

Marked ``fuzz`` (``pytest -m fuzz`` runs just this); it runs in the plain
``pytest -q`` too, sized to stay well under a minute.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from click.testing import CliRunner  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from aidsafe._util.errors import RecipeError, UserError  # noqa: E402
from aidsafe.cli._main import main  # noqa: E402
from aidsafe.config._recipe import load_recipe  # noqa: E402

from ..conftest import MINI, ROOT  # noqa: E402

pytestmark = pytest.mark.fuzz

# AIDSAFE_FUZZ_EXAMPLES=5000 pytest -m fuzz: a longer hunt
EXAMPLES = int(os.environ.get("AIDSAFE_FUZZ_EXAMPLES", "520"))
PER_RECIPE_SECONDS = 5
SEEDS = {path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
         for path in sorted((ROOT / "recipes").glob("*.yaml")) if path.name != "judges.yaml"}
SEEDS["mini.yaml"] = yaml.safe_load(MINI)
# the shipped variants extend aidsafe.yaml, which sits in recipes/; a copy elsewhere resolves it there
PROBLEM_LINE = re.compile(r"^\s{2}\S.*?:\d+[ :]")

odd_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "\u202eevil", "caf\u00e9", "\U0001f600", "a\tb", "line\nbreak", "nel\x85", "ls\u2028", "cr\r", "__init__", "class",
                     "my-field", "2nd", "True", "null", "~", "*", "&a", "- x", "{x: 1}", "'", '"', "#", "%TAG",
                     "a" * 300, "b" * 300 + ".yaml", "nul\x00byte", "..", "../../etc/passwd", "/etc/passwd", "aidsafe", "aidsafe.yaml"]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True, allow_infinity=True), odd_text)


def _paths(node, prefix=()):
    """Every (path, value) in a loaded YAML tree."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _get(tree, path):
    for part in path:
        tree = tree[part]
    return tree


@st.composite
def mutated_recipes(draw):
    """(file name, YAML text or bytes) of a mutated shipped recipe."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = copy.deepcopy(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(data))
        path, value = draw(st.sampled_from(paths))
        parent = _get(data, path[:-1]) if path else None
        action = draw(st.sampled_from(["drop", "rename", "scalar", "type", "nest", "alias", "extends", "odd_key",
                                       "duplicate_item", "empty"]))
        if action == "drop" and path:
            del parent[path[-1]]
        elif action == "rename" and path and isinstance(parent, dict):
            key = path[-1]
            new = draw(st.one_of(odd_text, st.just(key[:-1] if len(key) > 1 else key + "x"),
                                 st.just(key + draw(st.sampled_from("s_-x")))))
            parent[new] = parent.pop(key)
        elif action == "scalar" and path:
            parent[path[-1]] = draw(scalars)
        elif action == "type" and path:
            parent[path[-1]] = draw(st.sampled_from([[value], {"value": value}, str(value)[:40], [], {}, 0]))
        elif action == "nest" and path:
            depth = draw(st.integers(2, 120))
            nested = value
            for level in range(depth):
                nested = [nested] if level % 2 else {"k": nested}
            parent[path[-1]] = nested
        elif action == "alias" and path:
            # the same object twice: the dumper writes an anchor and an alias
            other, _ = draw(st.sampled_from(paths))
            if other and not other[:len(path)] == path and not path[:len(other)] == other:
                parent[path[-1]] = _get(data, other)
        elif action == "extends" and isinstance(data, dict):
            data["extends"] = draw(st.one_of(odd_text, st.sampled_from(
                ["aidsafe", "baseline.yaml", "recipe.yaml", "nowhere.yaml", "sub/../recipe.yaml", "/dev/null",
                 "..", "."]), scalars))
        elif action == "odd_key" and isinstance(value, dict):
            value[draw(odd_text)] = draw(scalars)
        elif action == "duplicate_item" and isinstance(value, list) and value:
            value.append(copy.deepcopy(draw(st.sampled_from(value))))
        elif action == "empty" and path:
            parent[path[-1]] = None
    try:
        text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False, width=10**6)
    except (yaml.YAMLError, RecursionError, ValueError):
        text = repr(data)
    # text-level damage: duplicated lines (duplicate keys), cut files, stray bytes, tabs
    lines = text.splitlines(keepends=True)
    damage = draw(st.sampled_from(["none", "none", "dup_line", "cut", "bytes", "tab", "bom"]))
    if damage == "dup_line" and lines:
        at = draw(st.integers(0, len(lines) - 1))
        lines.insert(at, lines[at])
    elif damage == "cut" and lines:
        lines = lines[:draw(st.integers(0, len(lines)))]
    text = "".join(lines)
    if damage == "tab":
        text = text.replace("  ", "\t", 1)
    if damage == "bom":
        text = "\ufeff" + text
    if damage == "bytes":
        raw = text.encode("utf-8")
        at = draw(st.integers(0, len(raw)))
        return draw(st.sampled_from(["recipe.yaml", "aidsafe-x.yaml"])), raw[:at] + draw(
            st.sampled_from([b"\xff", b"\xe9", b"\x00", b"\xc3(", b"\x80\x80"])) + raw[at:]
    return draw(st.sampled_from(["recipe.yaml", "aidsafe-x.yaml"])), text


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"loading took over {PER_RECIPE_SECONDS} s")


def _check_one(folder: Path, name: str, content) -> str:
    """Load (and if it loads, compile) one recipe; returns the outcome."""
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    # a sibling for `extends: baseline.yaml` style references and cycles
    (folder / "baseline.yaml").write_text("extends: recipe.yaml\n", encoding="utf-8")
    try:
        recipe = load_recipe(path)
    except RecipeError as exc:
        assert exc.problems, str(exc)
        for problem in str(exc).splitlines()[1:]:
            assert PROBLEM_LINE.match(problem), f"problem without file:line: {problem!r}\nin:\n{exc}"
        # and through the command: one `Error:` line, exit 1, no traceback
        result = CliRunner().invoke(main, ["validate", str(path)])
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (result.exception, result.output)
        assert "Traceback" not in result.output
        assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == \
            ["Error: 1 of 1 recipe(s) invalid"], result.stderr
        return "error"
    except UserError as exc:
        pytest.fail(f"a UserError without file:line from a recipe file: {exc}")
    from aidsafe.models._inspect import inspection_models
    from aidsafe.pipeline._compile import compile_recipe
    from aidsafe.runtime._plan import describe_recipe

    try:
        describe_recipe(compile_recipe(recipe, inspection_models(recipe), cache=None))
    except UserError:
        return "compile-error"
    return "ok"


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM for the per-recipe time limit")
def test_fuzzed_recipes_load_or_fail_with_file_and_line(tmp_path):
    outcomes: dict[str, int] = {}
    slowest = [0.0]
    folder = tmp_path  # hypothesis runs many examples in one test: one folder, files rewritten each time

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(mutated_recipes())
    def check(case):
        name, content = case
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(PER_RECIPE_SECONDS)
        started = time.perf_counter()
        try:
            outcome = _check_one(folder, name, content)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        slowest[0] = max(slowest[0], time.perf_counter() - started)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    check()
    print("fuzz outcomes:", outcomes, f"slowest {slowest[0]:.2f} s")
    assert sum(outcomes.values()) >= min(500, EXAMPLES), outcomes
    assert slowest[0] < PER_RECIPE_SECONDS
    # mutations must reach both sides, or the fuzzer only tests one
    assert outcomes.get("error", 0) > 50 and outcomes.get("ok", 0) > 10, outcomes
