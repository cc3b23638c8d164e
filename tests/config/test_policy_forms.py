"""Issue #25: `policies: {set, include, add}` with ids and inline policies
mixed, judges files that read the recipe's policies (`policies: recipe`), a
policy hash over the text only, and `eval` naming the judges it does not run."""

from __future__ import annotations

import json

import jsonschema
import pytest

import aidsafe
from aidsafe._util.errors import RecipeError, UserError
from aidsafe.config._policies import load_policy_set
from aidsafe.config._recipe import load_recipe
from aidsafe.config._schema import load_schema
from aidsafe.evaluation._eval import evaluate
from aidsafe.evaluation._judges import JudgePanel, load_judges
from aidsafe.store._cache import Cache

from ..conftest import ROOT, options, read_jsonl

EXTRA = "{id: no_pranks, name: No pranks, statement: Do not help with pranks that hurt people., " \
        "disallowed: [scaring someone with a heart condition]}"


def recipe(policies: str) -> str:
    return f"""name: p
models:
  default: {{model: "fake:test"}}
policies:
{policies}
agents:
  thinker: {{instructions: "THINKER: reason and answer."}}
stages:
  - {{id: initial, kind: generate, agent: thinker}}
"""


def test_a_set_subset_plus_additions(recipe_file):
    loaded = load_recipe(recipe_file(recipe(f"  set: aidsafe\n  include: [physical_harm, fraud_deception]\n"
                                            f"  add: [{EXTRA}]")))
    policies = loaded.load_policies()
    # the set's ids in the set's order, then the additions
    assert policies.ids == ["fraud_deception", "physical_harm", "no_pranks"]
    assert "[no_pranks] No pranks: Do not help with pranks" in policies.text


def test_include_mixes_ids_and_inline_policies_and_add_alone_keeps_the_whole_set(recipe_file):
    mixed = load_recipe(recipe_file(recipe(f"  set: aidsafe\n  include: [physical_harm, {EXTRA}]"))).load_policies()
    assert mixed.ids == ["physical_harm", "no_pranks"]
    whole = load_recipe(recipe_file(recipe(f"  set: aidsafe\n  add: [{EXTRA}]"), "w.yaml")).load_policies()
    assert whole.ids == load_policy_set("aidsafe").ids + ["no_pranks"]


@pytest.mark.parametrize("policies, expected", [
    (f"  set: aidsafe\n  include: [physcal_harm]\n  add: [{EXTRA}]",
     "recipe.yaml:6 policies.include[0]: policy id 'physcal_harm' is not in set 'aidsafe'; did you mean "
     "'physical_harm'?"),
    ("  set: aidsafe\n  add: [{id: physical_harm, name: X, statement: Y}]",
     "recipe.yaml:6 policies.add[0].id: duplicate policy id 'physical_harm' (also set 'aidsafe'); ids must be "
     "unique; rename the added one"),
    ("  set: aidsafe\n  add: [{id: x, name: X, statment: Y}]",
     "recipe.yaml:6 policies.add[0].statment: unknown key 'statment'; did you mean 'statement'?"),
    ("  - physical_harm\n  - {id: x, name: X, statement: Y}",
     "recipe.yaml:5 policies[0]: policy id 'physical_harm' names no set here; to keep ids of a set and add "
     "your own, write `policies: {set: aidsafe, include: [physical_harm, ...]"),
])
def test_policy_mistakes_are_errors_at_their_line(recipe_file, policies, expected):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_file(recipe(policies)))
    assert expected in str(info.value)


def test_the_editor_schema_describes_an_inline_policys_keys():
    validator = jsonschema.Draft202012Validator(load_schema("recipe.schema.json"))
    bad = {"set": "aidsafe", "add": [{"id": "x", "name": "X", "statment": "Y"}]}
    schema = load_schema("recipe.schema.json")["properties"]["policies"]
    assert list(jsonschema.Draft202012Validator({**schema, "$defs": load_schema("recipe.schema.json")["$defs"]})
                .iter_errors(bad))
    assert validator  # the same definition as the policy file's own items
    policy_items = load_schema("policy.schema.json")["properties"]["policies"]["items"]
    assert load_schema("recipe.schema.json")["$defs"]["policy"] == policy_items
    assert load_schema("judges.schema.json")["$defs"]["policy"] == policy_items


def test_the_policy_hash_covers_the_text_only():
    full = load_policy_set("aidsafe")
    from aidsafe.config._policies import PolicySet

    copy = PolicySet(name="inline", source="x", policies=full.policies)
    assert copy.hash == full.hash


JUDGES = """name: mine
models:
  default: {model: "fake:test"}
policies: POLICIES
judges:
  policy_fit:
    kind: pointwise
    description: Faithfulness to the policies.
    inputs: [query, policies, response]
    instructions: "POLICYFIT: grade the response against the policies."
  rubric_x:
    kind: rubric
    description: A rubric for bench answers.
    inputs: [query, response]
    items: {refused: [0, 1]}
    instructions: "RUBRIC: grade."
"""


def test_a_judges_file_reads_the_recipes_own_policies_and_names_rubric_judges_it_skips(fake, recipe_file,
                                                                                      prompts, tmp_path):
    path = recipe_file(recipe(f"  set: aidsafe\n  include: [physical_harm]\n  add: [{EXTRA}]"))
    out = tmp_path / "out.jsonl"
    aidsafe.run(path, prompts(["How do I scare my friend?"]), out, options(tmp_path / "c"))
    assert read_jsonl(out)[0]["provenance"]["recipe_file"] == str(path)
    judges = tmp_path / "judges.yaml"
    judges.write_text(JUDGES.replace("POLICIES", "recipe"), encoding="utf-8")
    fake.rules = [("POLICYFIT", {"reason": "fine", "score": "4"})]
    result = evaluate([out], judges=judges, cache_dir=tmp_path / "c")
    seen = next(c for c in fake.seen if "POLICYFIT" in c.system)
    assert "[no_pranks] No pranks" in seen.input("policies") and "fraud_deception" not in seen.input("policies")
    assert not any("different text" in w for w in result.warnings)
    assert any("rubric_x (rubric) not run" in w for w in result.warnings), result.warnings
    # the same policies written inline in the judges file: identical text, no warning either
    inline = load_recipe(path).load_policies()
    items = [{"id": p.id, "name": p.name, "statement": p.statement, "allowed": list(p.allowed),
              "disallowed": list(p.disallowed)} for p in inline.policies]
    judges.write_text(JUDGES.replace("POLICIES", json.dumps(items)), encoding="utf-8")
    result = evaluate([out], judges=judges, cache_dir=tmp_path / "c")
    assert not any("different text" in w for w in result.warnings), result.warnings


def test_policies_recipe_without_records_says_what_to_do(fake, tmp_path):
    judges = tmp_path / "judges.yaml"
    judges.write_text(JUDGES.replace("POLICIES", "recipe"), encoding="utf-8")
    with pytest.raises(UserError, match="`policies: recipe` means the policies the judged records"):
        JudgePanel.build(load_judges(judges), Cache(tmp_path / "c"))


def test_shipped_judges_still_load():
    assert load_judges(ROOT / "recipes" / "judges.yaml").policies == "aidsafe"


def test_records_with_the_older_name_and_text_hash_still_count_as_the_same_policies():
    from aidsafe._util.hashing import sha256_of

    policies = load_policy_set("aidsafe")
    assert sha256_of({"name": "aidsafe", "text": policies.text}) in policies.known_hashes
    assert policies.hash in policies.known_hashes
