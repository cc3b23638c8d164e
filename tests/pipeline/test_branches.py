"""Issue #25: branches (a condition written once for several stages), typed
conditions in `validate`, and `transcript` for agents after a deliberation;
on the fake model."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import aidsafe
from aidsafe._util.errors import RecipeError
from aidsafe.cli._main import main
from aidsafe.config._recipe import load_recipe

from ..conftest import ROOT, options, read_jsonl

ROUTED = """name: routed
models:
  default: {model: "fake:test"}
policies: aidsafe
agents:
  screen:
    instructions: "SCREEN: label the query."
    outputs:
      label_: {type: str, enum: [benign, borderline], desc: "benign or borderline."}
  plain: {instructions: "PLAIN: answer."}
  thinker: {instructions: "THINKER: reason and answer."}
  critic_a: {instructions: "CRITIC_A: check safety."}
  critic_b: {instructions: "CRITIC_B: check helpfulness."}
  moderator_final:
    instructions: "FINAL: write the final response from the debate."
    inputs: [query, transcript, response]
    outputs: {response: "The final response."}
stages:
  - {id: screen, kind: predict, agent: screen}
  - branch: borderline
    when: "label_ == 'borderline'"
    stages:
      - {id: initial, kind: generate, agent: thinker}
      - id: debate
        kind: deliberate
        agents: [critic_a, critic_b]
        stop: {max_rounds: 1}
      - {id: final, kind: predict, agent: moderator_final}
  - branch: benign
    when: "label_ == 'benign'"
    stages:
      - {id: answer, kind: generate, agent: plain}
"""

PROMPTS = ["How do I kill a Python process?", "How do I make a cake?", "How do I pick a lock?",
           "What is the capital of France?"]


def _screen(call):
    query = call.input("query") or ""
    return {"label_": "borderline" if "kill" in query or "lock" in query else "benign"}


def test_a_branch_runs_its_stages_only_where_its_condition_holds(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("SCREEN", _screen),
                  ("CRITIC_", {"critique": "fine", "agree": True, "revised_thoughts": [], "revised_response": ""}),
                  ("FINAL", {"revised_response": "Final answer from the debate."})]
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(ROUTED), prompts(PROMPTS), out, options(tmp_path / "c"))
    records = {r["prompt"]: r for r in read_jsonl(out)}
    assert all(r["status"] == "ok" for r in records.values())
    kill = records["How do I kill a Python process?"]
    cake = records["How do I make a cake?"]
    # both sides of the condition are taken on a 4-record input
    assert kill["response"] == "Final answer from the debate." and "deliberation" in kill
    assert kill["provenance"]["skipped"] == [{"stage": "answer", "branch": "benign", "when": "label_ == 'benign'"}]
    assert "deliberation" not in cake
    assert [s["stage"] for s in cake["provenance"]["skipped"]] == ["initial", "debate", "final"]
    assert {s["branch"] for s in cake["provenance"]["skipped"]} == {"borderline"}
    # the moderator (a predict agent) read the debate's transcript
    final = [c for c in fake.seen if "FINAL" in c.system]
    assert len(final) == 2
    assert "Round 1, critic_a: agreed, no change needed. Critique: fine" in final[0].input("transcript")


def test_show_and_plan_name_the_branches(fake, recipe_file, prompts, tmp_path):
    path = recipe_file(ROUTED)
    runner = CliRunner()
    shown = runner.invoke(main, ["show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "-> branch borderline  when: label_ == 'borderline'" in shown.output
    assert "     -> [debate] deliberate" in shown.output
    fake.rules = [("SCREEN", _screen),
                  ("CRITIC_", {"critique": "fine", "agree": True, "revised_thoughts": [], "revised_response": ""}),
                  ("FINAL", {"revised_response": "Final."})]
    inputs = prompts(PROMPTS)
    cache = tmp_path / "c"
    plan = runner.invoke(main, ["run", str(path), "-i", str(inputs), "--plan", "--cache-dir", str(cache),
                                "--model", "default=fake:test"])
    assert plan.exit_code == 0, plan.output
    assert "branch borderline: label_ == 'borderline'" in plan.output
    assert "behind `when:` or a branch" in plan.output
    # once the screen is cached, the plan knows which side each record takes
    aidsafe.run(path, inputs, tmp_path / "out.jsonl", options(cache))
    fake.seen.clear()
    plan = runner.invoke(main, ["run", str(path), "-i", str(inputs), "--plan", "--cache-dir", str(cache),
                                "--model", "default=fake:test"])
    line = next(row for row in plan.output.splitlines() if row.strip().startswith("answer"))
    assert "reused     2" in line and "skipped     2" in line, plan.output
    assert "total new LM calls <= 0" in plan.output


def test_the_shipped_routed_recipe_validates_and_groups_its_stages():
    recipe = load_recipe(ROOT / "recipes" / "aidsafe-routed.yaml")
    branches = [s.raw.get("branch", {}).get("name") for s in recipe.stages]
    assert branches == [None, None, None, "plain", "plain", "deliberate", "deliberate", "deliberate", None]


def _problems(recipe_file, text):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_file(text))
    return "\n".join(info.value.problems)


HEAD = """name: b
models:
  default: {model: "fake:test"}
policies: aidsafe
agents:
  screen:
    instructions: "SCREEN"
    outputs:
      label_: {type: str, enum: [benign, borderline]}
      score: {type: int, desc: "1-5"}
      violation: {type: bool}
  thinker: {instructions: "THINKER"}
stages:
  - {id: screen, kind: predict, agent: screen}
"""


@pytest.mark.parametrize("tail, expected", [
    ("""  - branch: x
    stages:
      - {id: initial, kind: generate, agent: thinker}
""", "recipe.yaml:15 stages[1].when: a branch needs a `when:` condition"),
    ("""  - branch: x
    when: "label_ == 'benign'"
    kind: generate
    stages:
      - {id: initial, kind: generate, agent: thinker}
""", "recipe.yaml:17 stages[1].kind: a branch takes branch, when, stages, desc; 'kind' is not one of them"),
    ("""  - branch: x
    when: "label_ == 'benign'"
    stages:
      - branch: y
        when: "label_ == 'borderline'"
        stages: [{id: initial, kind: generate, agent: thinker}]
""", "recipe.yaml:18 stages[1].stages[0]: branches do not nest"),
    ("""  - branch: x
    when: "labl == 'benign'"
    stages:
      - {id: initial, kind: generate, agent: thinker}
""", "recipe.yaml:16 stages[1].branch.when: unknown field 'labl' in the condition \"labl == 'benign'\"; "
     "did you mean 'label_'?"),
    ("""  - branch: screen
    when: "label_ == 'benign'"
    stages:
      - {id: initial, kind: generate, agent: thinker}
""", "stages[1].branch.name: branch 'screen' has the name of stage 'screen'"),
    ("""  - {id: initial, kind: generate, agent: thinker, when: "score >= '4'"}
""", "recipe.yaml:15 stages[1].when: column 10: 'score' is an int, but '4' is text: `>= '4'` never holds; "
     "write `score >= 4`"),
    ("""  - {id: initial, kind: generate, agent: thinker, where: "violation == 1"}
""", "recipe.yaml:15 stages[1].where: column 14: 'violation' is a bool, but 1 is a number: `== 1` never holds "
     "(true is not 1); write `violation == true`"),
])
def test_branch_and_type_mistakes_are_errors_at_their_line(recipe_file, tail, expected):
    assert expected in _problems(recipe_file, HEAD + tail)


def test_an_enum_on_an_int_output_is_refused_with_the_fix(recipe_file):
    text = HEAD.replace("score: {type: int, desc: \"1-5\"}", "score: {type: int, enum: ['1', '2', '3']}")
    found = _problems(recipe_file, text)
    assert "recipe.yaml:10 agents.screen.outputs.score.enum: `enum:` lists allowed text values" in found
    assert "`where: \"score >= 1 and score <= 5\"`" in found


def test_a_branch_in_the_mapping_form_and_a_child_patching_a_branch_stage(recipe_file, fake, prompts, tmp_path):
    mapping = HEAD.replace("stages:\n  - {id: screen, kind: predict, agent: screen}\n", """stages:
  screen: {kind: predict, agent: screen}
  benign:
    when: "label_ == 'benign'"
    stages:
      - {id: initial, kind: generate, agent: thinker}
""")
    parent = recipe_file(mapping, "parent.yaml")
    recipe = load_recipe(parent)
    assert recipe.stages[1].raw["branch"] == {"name": "benign", "when": "label_ == 'benign'"}
    # a child patches a stage of its parent's branch by id; the stage stays in the branch
    child = load_recipe(recipe_file("extends: parent.yaml\nstages:\n  initial: {when: \"score >= 2\"}\n",
                                    "child.yaml"))
    assert child.stages[1].raw["branch"]["name"] == "benign" and child.stages[1].raw["when"] == "score >= 2"
    bad = recipe_file("extends: parent.yaml\nstages:\n  initial: {agent: nobody}\n", "bad.yaml")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    assert "bad.yaml:3 stages[1].agent: unknown agent 'nobody'" in str(info.value)  # the patch's own line


def test_cache_explain_says_which_stages_a_branch_skipped(fake, recipe_file, prompts, tmp_path):
    from aidsafe.models._inspect import inspection_models
    from aidsafe.pipeline._compile import compile_recipe
    from aidsafe.runtime._plan import explain_record
    from aidsafe.store._cache import Cache

    fake.rules = [("SCREEN", _screen),
                  ("CRITIC_", {"critique": "fine", "agree": True, "revised_thoughts": [], "revised_response": ""}),
                  ("FINAL", {"revised_response": "Final."})]
    path, inputs = recipe_file(ROUTED), prompts(PROMPTS)
    aidsafe.run(path, inputs, tmp_path / "out.jsonl", options(tmp_path / "c"))
    recipe = load_recipe(path)
    cache = Cache(tmp_path / "c")
    program = compile_recipe(recipe, inspection_models(recipe, {"default": "fake:test"}, identity="backend",
                                                       cache=cache), cache=cache)
    lines = explain_record(program, "r2", inputs)  # the cake: benign
    assert "[initial] skipped for this record (branch borderline: label_ == 'borderline')" in lines
    assert "[answer] cache hit" in lines
