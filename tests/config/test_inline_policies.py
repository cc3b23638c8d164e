"""Policies written inside a recipe: checked against the policy schema, each
problem at its line; the agents see them like a policy file's."""

from __future__ import annotations

import pytest

import aidsafe

from ..conftest import MINI, options, read_jsonl

INLINE = MINI.replace("policies: aidsafe\n", """policies:
  - id: no_weapons
    name: No weapons
    statement: Do not help build weapons.
    allowed: [history of weapons]
    disallowed: [assembly instructions]
  - id: be_helpful
    name: Be helpful
    statement: Help with everything else.
""")


def test_inline_policies_load_and_reach_the_agents(fake, recipe_file, prompts, tmp_path):
    recipe = aidsafe.load_recipe(recipe_file(INLINE))
    policies = recipe.load_policies()
    assert policies.name == "inline" and policies.ids == ["no_weapons", "be_helpful"]
    assert policies.text.startswith("P1 [no_weapons] No weapons: Do not help build weapons.\n"
                                    "  Allowed: history of weapons\n  Not allowed: assembly instructions\n")
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe.path, prompts(["hi"]), out, options(tmp_path / "c"))
    record = read_jsonl(out)[0]
    assert record["status"] == "ok" and record["provenance"]["policy_set"] == "inline"
    thinker = [c for c in fake.seen if "THINKER" in c.system][0]
    assert "P2 [be_helpful] Be helpful: Help with everything else." in thinker.input("policies")


def test_the_inline_set_hash_covers_the_text_not_the_recipe_name(recipe_file):
    a = aidsafe.load_recipe(recipe_file(INLINE, "a.yaml")).load_policies()
    b = aidsafe.load_recipe(recipe_file(INLINE.replace("name: mini", "name: other"), "b.yaml")).load_policies()
    c = aidsafe.load_recipe(recipe_file(INLINE.replace("everything else", "the rest"), "c.yaml")).load_policies()
    assert a.hash == b.hash != c.hash


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("    statement: Help with everything else.\n", "",
     "11 policies[1]: missing required key 'statement' (The policy itself.); add `statement:` here"),
    ("  - id: be_helpful", "  - id: no_weapons",
     "11 policies[1].id: duplicate policy id 'no_weapons' (also policies[0]); ids must be unique"),
    ("    allowed: [history of weapons]", "    allowd: [history of weapons]",
     "9 policies[0].allowd: unknown key 'allowd'; did you mean 'allowed'?; allowed keys here: allowed, "
     "disallowed, id, name, statement"),
    ("  - id: be_helpful", "  - id: be helpful",
     "11 policies[1].id: \"be helpful\" does not match ^[A-Za-z0-9_-]+$; use letters, digits, '_' or '-'"),
])
def test_a_bad_inline_policy_is_an_error_at_its_line(old, new, expected, recipe_file):
    path = recipe_file(INLINE.replace(old, new))
    with pytest.raises(aidsafe.RecipeError) as info:
        aidsafe.load_recipe(path)
    assert info.value.problems == [f"{path}:{expected}"]


def test_inline_policies_must_be_a_non_empty_list_of_mappings(recipe_file):
    path = recipe_file(MINI.replace("policies: aidsafe\n", "policies: []\n"))
    with pytest.raises(aidsafe.RecipeError) as info:
        aidsafe.load_recipe(path)
    assert info.value.problems[0] == f"{path}:5 policies: must not be empty (at least 1), found []"
