"""What editors and new authors see: every shipped recipe carries a schema
modeline and validates against the JSON Schema as written (variants too),
``stages`` may be a mapping, ``$schema:`` is accepted."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

import aidsafe

from ..conftest import MINI, ROOT

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def schema_for(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    name = "judges.schema.json" if "judges" in data and "stages" not in data else "recipe.schema.json"
    return name, data


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_has_a_schema_modeline(path):
    name, _ = schema_for(path)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema=../schemas/{name}", first


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates_against_its_schema_as_written(path):
    # what an editor checks: the file itself, before `extends` is resolved
    name, data = schema_for(path)
    schema = json.loads((ROOT / "schemas" / name).read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    assert not errors


def test_a_variant_need_not_repeat_required_keys_but_a_root_recipe_must():
    schema = json.loads((ROOT / "schemas" / "recipe.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    variant = {"extends": "aidsafe.yaml", "agents": {"refiner": {"temperature": 0.2}, "old": None},
               "stages": {"deliberation": {"stop": {"max_rounds": 1}}, "refine": None,
                          "judge": {"kind": "gate", "after": "refine", "checks": [{"agent": "j"}]}}}
    assert not list(validator.iter_errors(variant))
    missing = sorted(e.message for e in validator.iter_errors({"name": "x", "agents": {"a": {"model": "m"}}}))
    assert missing == ["'instructions' is a required property", "'models' is a required property",
                       "'policies' is a required property", "'stages' is a required property"]


def test_stages_may_be_a_mapping_from_id_to_stage(recipe_file):
    text = MINI.replace("""stages:
  - {id: intents, kind: decompose, agent: analyst}
  - {id: initial, kind: generate, agent: thinker}
  - id: deliberation
    kind: deliberate""", """stages:
  intents: {kind: decompose, agent: analyst}
  initial: {kind: generate, agent: thinker}
  deliberation:
    kind: deliberate""").replace("  - id: refine\n    kind: refine", "  refine:\n    kind: refine")
    assert "  - " not in text.split("stages:")[1]
    as_mapping = aidsafe.load_recipe(recipe_file(text, "mapping.yaml"))
    as_list = aidsafe.load_recipe(recipe_file(MINI, "list.yaml"))
    assert [(s.id, s.kind, s.agent, s.agents) for s in as_mapping.stages] == \
        [(s.id, s.kind, s.agent, s.agents) for s in as_list.stages]


def test_a_stage_mapping_error_names_the_stage_and_its_line(recipe_file):
    text = MINI.replace("""stages:
  - {id: intents, kind: decompose, agent: analyst}
  - {id: initial, kind: generate, agent: thinker}""", """stages:
  intents: {kind: decompose, agent: analyst}
  initial: {kind: generate, agnt: thinker}""").split("  - id: deliberation")[0]
    path = recipe_file(text)
    with pytest.raises(aidsafe.RecipeError) as info:
        aidsafe.load_recipe(path)
    assert info.value.problems[0].startswith(f"{path}:14 stages[1].agnt: unknown key 'agnt'; did you mean 'agent'?")


def test_a_schema_key_is_accepted_and_changes_nothing_else(recipe_file):
    plain = aidsafe.load_recipe(recipe_file(MINI, "a.yaml"))
    marked = aidsafe.load_recipe(recipe_file("$schema: ../schemas/recipe.schema.json\n" + MINI, "b.yaml"))
    assert [s.raw for s in marked.stages] == [s.raw for s in plain.stages]
