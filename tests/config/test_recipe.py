"""Recipe loading: schema errors with lines, extends, registries, shipped recipes."""

from __future__ import annotations

import re

import pytest

from aidsafe._util.errors import RecipeError, UserError
from aidsafe.config._recipe import load_recipe
from aidsafe.models._engine import build_models
from aidsafe.pipeline._compile import compile_recipe
from aidsafe.store._cache import Cache

from ..conftest import MINI, ROOT

# recipes/judges.yaml is a judges file, not a pipeline (tests/test_judges.py checks it)
SHIPPED = sorted(p for p in (ROOT / "recipes").glob("*.yaml") if p.name != "judges.yaml")
INVALID = sorted((ROOT / "tests" / "invalid_recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_compiles(path, fake, tmp_path):
    recipe = load_recipe(path)
    overrides = {name: "fake:test" for name in recipe.models}
    models = build_models(recipe.models, Cache(tmp_path / "c"), overrides)
    program = compile_recipe(recipe, models)
    assert program.stage_ids == [s.id for s in recipe.stages]
    # every agent role is a real DSPy predictor that optimizers can see
    assert len(program.named_predictors()) == sum(len(s.agent_names()) for s in recipe.stages)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_recipes_give_the_documented_errors(path):
    expected = [line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
                if line.startswith("# expect:")]
    assert expected, f"{path.name} must list `# expect:` lines"
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    text = str(info.value)
    for item in expected:
        assert item in text, f"{item!r} not in:\n{text}"


def test_all_schema_errors_are_reported_at_once_with_lines(recipe_file):
    path = recipe_file("""name: broken
models:
  default: {model: "fake:test", temprature: 0.1}
policies: aidsafe
agents:
  a: {instructions: "x", outputs: {intents: {type: text}}}
stages:
  - {id: one, kind: decompose, agent: a, rounds: 3}
""")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    problems = info.value.problems
    assert len(problems) == 3
    assert re.search(r"recipe\.yaml:3 models\.default\.temprature: unknown key 'temprature'; did you mean 'temperature'\?", problems[0])
    assert "recipe.yaml:6 agents.a.outputs.intents.type: expected one of str, list[str]" in problems[1]
    assert "recipe.yaml:8 stages[0].rounds: unknown key 'rounds'" in problems[2]


def test_unknown_stage_kind_and_agent_suggest_the_closest(recipe_file):
    path = recipe_file(MINI.replace("kind: deliberate", "kind: deliberation").replace("agent: refiner", "agent: refinr"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    text = str(info.value)
    assert "unknown stage kind 'deliberation'; did you mean 'deliberate'?" in text
    assert "unknown agent 'refinr'; did you mean 'refiner'?" in text
    assert re.search(r"recipe\.yaml:\d+ stages\[2\]\.kind", text)


def test_yaml_syntax_error_names_the_line(recipe_file):
    path = recipe_file("name: x\nmodels:\n  default: {model: a\nstages: []\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert re.search(r"recipe\.yaml:\d+: YAML syntax error", str(info.value))


def test_yaml_tags_cannot_build_python_objects(recipe_file):
    path = recipe_file("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "YAML syntax error" in str(info.value)


def test_extends_overrides_a_few_lines(recipe_file):
    recipe_file(MINI, "base.yaml")
    child = recipe_file("extends: base.yaml\nstages: {deliberation: {stop: {max_rounds: 1}}}\n"
                        "agents: {refiner: {instructions: 'REFINER v2'}}\n", "child.yaml")
    recipe = load_recipe(child)
    assert recipe.name == "child"
    assert recipe.stage("deliberation").stop == {"max_rounds": 1, "agreement": {"rule": "consecutive", "k": 2}}
    assert recipe.agents["refiner"].instructions == "REFINER v2"
    assert recipe.agents["thinker"].instructions == "THINKER: reason and answer."
    assert recipe.chain[0].endswith("child.yaml") and recipe.chain[-1].endswith("base.yaml")


def test_extends_null_removes_and_errors_point_at_the_child(recipe_file):
    recipe_file(MINI, "base.yaml")
    child = recipe_file("extends: base.yaml\nstages: {refine: null}\n", "child.yaml")
    assert [s.id for s in load_recipe(child).stages] == ["intents", "initial", "deliberation"]
    bad = recipe_file("extends: base.yaml\nstages:\n  refiner: {agent: x}\n", "bad.yaml")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    assert "bad.yaml:3 stages.refiner: the parent recipe has no stage 'refiner'; did you mean 'refine'?" in str(info.value)
    wrong = recipe_file("extends: base.yaml\nstages:\n  deliberation: {stop: {max_round: 1}}\n", "wrong.yaml")
    with pytest.raises(RecipeError) as info:
        load_recipe(wrong)
    assert "wrong.yaml:3 stages[2].stop.max_round: unknown key 'max_round'; did you mean 'max_rounds'?" in str(info.value)


def test_extends_cycle_and_escape_are_refused(recipe_file, tmp_path):
    recipe_file("extends: b.yaml\n", "a.yaml")
    recipe_file("extends: a.yaml\n", "b.yaml")
    with pytest.raises(RecipeError, match="extends cycle"):
        load_recipe(tmp_path / "a.yaml")
    escape = recipe_file("extends: /etc/passwd\n", "e.yaml")
    with pytest.raises(UserError, match="outside the allowed folders"):
        load_recipe(escape)


def test_recipe_by_name_and_unknown_name():
    assert load_recipe("aidsafe").name == "aidsafe"
    with pytest.raises(UserError, match="did you mean 'baseline'"):
        load_recipe("baselin")


def test_hash_changes_with_content(recipe_file):
    a = load_recipe(recipe_file(MINI, "a.yaml"))
    b = load_recipe(recipe_file(MINI.replace("REFINER: keep", "REFINER: retain"), "b.yaml"))
    assert a.hash != b.hash


def test_extends_can_add_stages_at_the_end_or_after_one(recipe_file):
    recipe_file(MINI, "base.yaml")
    child = recipe_file("extends: base.yaml\nstages:\n  final: {kind: respond, agent: thinker}\n"
                        "  clean: {kind: filter, after: initial, filters: [{type: dedupe}]}\n", "child.yaml")
    assert [s.id for s in load_recipe(child).stages] == ["intents", "initial", "clean", "deliberation", "refine", "final"]
    bad = recipe_file("extends: base.yaml\nstages:\n  extra: {kind: filter, after: nowhere, filters: [{type: dedupe}]}\n",
                      "bad.yaml")
    with pytest.raises(RecipeError, match=r"bad.yaml:3 stages.extra.after: no stage 'nowhere'"):
        load_recipe(bad)


def test_a_recipe_anywhere_can_extend_a_shipped_one(recipe_file):
    child = recipe_file("extends: aidsafe.yaml\nstages: {deliberation: {stop: {max_rounds: 1}}}\n", "mine.yaml")
    recipe = load_recipe(child)
    assert recipe.name == "mine" and recipe.stage("deliberation").stop["max_rounds"] == 1
