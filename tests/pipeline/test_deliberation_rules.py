"""Deliberation agreement rules (majority, k_of_n, moderator), the transcript
input, per-turn extras, and the errors a wrong ``agreement:`` gives."""

from __future__ import annotations

import pytest

import aidsafe

from ..conftest import MINI, options, read_jsonl

THREE = MINI.replace("  refiner:", '  critic_c: {instructions: "CRITIC_C: check honesty."}\n'
                                   '  moderator: {instructions: "MODERATOR: decide whether to stop."}\n'
                                   "  refiner:").replace("agents: [critic_a, critic_b]",
                                                         "agents: [critic_a, critic_b, critic_c]")
CONSECUTIVE = "agreement: {rule: consecutive, k: 2}"
REVISE = {"agree": False, "revised_thoughts": ["a new thought"], "revised_response": "a new response"}


def with_rule(rule: str, text: str = THREE) -> str:
    return text.replace(CONSECUTIVE, rule)


def deliberate(fake, recipe_file, prompts, tmp_path, text):
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(text), prompts(["How do I kill a Python process?"]), out, options(tmp_path / "c"))
    record = read_jsonl(out)[0]
    assert record["status"] == "ok", record.get("error")
    return record["deliberation"]


def test_majority_stops_when_most_of_a_round_agrees(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_A", {"agree": True}), ("CRITIC_B", REVISE), ("CRITIC_C", {"agree": True})]
    d = deliberate(fake, recipe_file, prompts, tmp_path, with_rule("agreement: {rule: majority}"))
    assert (d["stop_reason"], d["stop_rule"], d["rounds"]) == ("agreement", "majority", 1)
    assert d["stop_detail"] == "2 of 3 deliberators agreed in round 1 (a majority)"


def test_majority_goes_on_while_only_a_minority_agrees(fake, recipe_file, prompts, tmp_path):
    counter = iter(range(100))
    fake.rules = [("CRITIC_A", {"agree": True}),
                  ("CRITIC_", lambda call: {**REVISE, "revised_thoughts": [f"revision {next(counter)}"]})]
    d = deliberate(fake, recipe_file, prompts, tmp_path, with_rule("agreement: {rule: majority}"))
    assert (d["stop_reason"], d["stop_rule"], d["rounds"]) == ("max_rounds", "budget", 3)


def test_k_of_n_needs_k_agreements_in_one_round(fake, recipe_file, prompts, tmp_path):
    counter = iter(range(100))
    fake.rules = [("CRITIC_A", {"agree": True}),
                  ("CRITIC_B", [lambda call: {**REVISE, "revised_thoughts": [f"r{next(counter)}"]}, {"agree": True}]),
                  ("CRITIC_C", lambda call: {**REVISE, "revised_thoughts": [f"r{next(counter)}"]})]
    d = deliberate(fake, recipe_file, prompts, tmp_path, with_rule("agreement: {rule: k_of_n, k: 2}"))
    # round 1: a agrees, b and c revise; round 2: a and b agree -> 2 of 3
    assert (d["stop_reason"], d["stop_rule"], d["rounds"], d["turns"]) == ("agreement", "k_of_n", 2, 6)
    assert d["stop_detail"] == "2 of 3 deliberators agreed in round 2 (k=2)"


def test_a_round_rule_stops_as_no_change_when_nobody_agrees_or_changes(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": False, "revised_thoughts": [], "revised_response": ""})]
    d = deliberate(fake, recipe_file, prompts, tmp_path, with_rule("agreement: {rule: k_of_n, k: 3}"))
    assert (d["stop_reason"], d["stop_rule"], d["rounds"]) == ("no_change", "k_of_n", 1)
    assert [t["action"] for t in d["log"]] == ["endorse"] * 3


def test_the_moderator_reads_the_transcript_and_decides(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_A", REVISE), ("CRITIC_", {"agree": True, "critique": "Looks fine to me."}),
                  ("MODERATOR", [{"reason": "B and C have not seen A's revision twice.", "stop": False},
                                 {"reason": "Everyone agrees now.", "stop": True}])]
    d = deliberate(fake, recipe_file, prompts, tmp_path, with_rule("agreement: {rule: moderator, agent: moderator}"))
    assert (d["stop_reason"], d["stop_rule"], d["rounds"]) == ("moderator", "moderator", 2)
    assert d["stop_detail"] == "moderator: Everyone agrees now."
    assert [(m["round"], m["stop"]) for m in d["moderation"]] == [(1, False), (2, True)]
    calls = [c for c in fake.seen if "MODERATOR" in c.system]
    assert len(calls) == 2
    first = calls[0].input("transcript")
    assert "Round 1, critic_a: revised the thoughts or response." in first
    assert "Round 1, critic_b: agreed, no change needed. Critique: Looks fine to me." in first
    assert "moderator moderator: continue. Reason: B and C have not seen" in calls[1].input("transcript")


def test_the_moderator_is_not_asked_after_the_last_round(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True}), ("MODERATOR", {"reason": "go on", "stop": False})]
    text = with_rule("agreement: {rule: moderator, agent: moderator}").replace("max_rounds: 3", "max_rounds: 2")
    d = deliberate(fake, recipe_file, prompts, tmp_path, text)
    assert (d["stop_reason"], d["rounds"], len(d["moderation"])) == ("max_rounds", 2, 1)
    recipe = aidsafe.load_recipe(recipe_file(text))
    cache = aidsafe.Cache(tmp_path / "c2")
    program = aidsafe.compile_recipe(recipe, aidsafe.build_models(recipe.models, cache), cache=cache)
    assert program.stages["deliberation"].max_calls() == 2 * 3 + 1  # 3 turns a round, the moderator once


def test_deliberators_read_earlier_turns_when_they_ask_for_the_transcript(fake, recipe_file, prompts, tmp_path):
    text = MINI.replace('critic_b: {instructions: "CRITIC_B: check helpfulness."}',
                        'critic_b: {instructions: "CRITIC_B: check helpfulness.", '
                        "inputs: [query, policies, thoughts, response, transcript]}")
    fake.rules = [("CRITIC_A", {"agree": False, "critique": "The response is too curt.", "revised_thoughts": [],
                                "revised_response": ""}),
                  ("CRITIC_B", {"agree": True})]
    deliberate(fake, recipe_file, prompts, tmp_path, text)
    b_call = [c for c in fake.seen if "CRITIC_B" in c.system][0]
    assert "Round 1, critic_a: disagreed but proposed no change. Critique: The response is too curt." \
        in b_call.input("transcript")
    # the transcript is the last input: everything before it is a prefix shared by the record's turns
    assert b_call.user.index("## transcript ##") > b_call.user.index("## response ##")
    a_call = [c for c in fake.seen if "CRITIC_A" in c.system][0]
    assert a_call.input("transcript") is None  # not asked for, not sent


def test_every_turn_keeps_its_own_extra_outputs_in_the_log(fake, recipe_file, prompts, tmp_path):
    text = MINI.replace('critic_a: {instructions: "CRITIC_A: check safety."}',
                        'critic_a: {instructions: "CRITIC_A: check safety.", '
                        'outputs: {severity: {type: int, desc: "1-5"}}}')
    fake.rules = [("CRITIC_A", [{"agree": False, "severity": 4, **REVISE}, {"agree": True, "severity": 1}]),
                  ("CRITIC_B", [{**REVISE, "revised_response": "b's response"}, {"agree": True}])]
    d = deliberate(fake, recipe_file, prompts, tmp_path, text)
    assert [(t["agent"], t.get("extra")) for t in d["log"]] == [
        ("critic_a", {"severity": 4}), ("critic_b", None), ("critic_a", {"severity": 1}), ("critic_b", None)]


# ------------------------------------------------------------------ errors

BASE = "stages[2].stop.agreement"


@pytest.mark.parametrize(("rule", "expected"), [
    ("{rule: majorty}", f"{BASE}.rule: expected one of consecutive, no_change, majority, k_of_n, "
                        "moderator, found \"majorty\"; did you mean 'majority'?"),
    ("{rule: k_of_n}", f"{BASE}: the k_of_n rule needs `k:` (how many of the 3 deliberators must "
                       "agree in a round), e.g. agreement: {rule: k_of_n, k: 2}"),
    ("{rule: k_of_n, k: 4}", f"{BASE}.k: k_of_n: k must be between 1 and the number of "
                             "deliberators (3), found 4; lower `k` or add agents"),
    ("{rule: majority, k: 2}", f"{BASE}.k: `k` applies to the consecutive and k_of_n rule(s) only; "
                               "remove it for `majority` (`k: null` in a recipe that extends one that sets it)"),
    ("{rule: moderator}", f"{BASE}: the moderator rule needs `agent: NAME`, the agent that reads "
                          "each round and decides to stop or go on, e.g. agreement: {rule: moderator, agent: "
                          "moderator}"),
    ("{rule: moderator, agent: moderatr}", f"{BASE}.agent: unknown agent 'moderatr'; did you mean "
                                           "'moderator'?; declared agents: analyst, thinker, critic_a, critic_b, "
                                           "critic_c, moderator, refiner"),
    ("{rule: majority, agent: moderator}", f"{BASE}.agent: `agent` applies to the moderator rule(s) "
                                           "only; remove it for `majority` (`agent: null` in a recipe that extends one "
                                           "that sets it)"),
])
def test_a_wrong_agreement_rule_is_an_error_with_its_line(rule, expected, recipe_file):
    path = recipe_file(with_rule(f"agreement: {rule}"))
    with pytest.raises(aidsafe.RecipeError) as info:
        aidsafe.load_recipe(path)
    assert info.value.problems == [f"{path}:20 {expected}"]


def test_a_moderator_reads_only_what_a_moderator_is_offered(recipe_file):
    text = with_rule("agreement: {rule: moderator, agent: moderator}").replace(
        '"MODERATOR: decide whether to stop."}', '"MODERATOR: decide whether to stop.", inputs: [query, gate]}')
    path = recipe_file(text)
    with pytest.raises(aidsafe.RecipeError) as info:
        aidsafe.load_recipe(path)
    assert info.value.problems == [
        f"{path}:12 agents.moderator.inputs[1]: agent 'moderator' is used by stage 'deliberation' (deliberate), "
        "which offers inputs query, policies, intents, thoughts, response, round, transcript; 'gate' is not "
        "one of them"]


@pytest.mark.parametrize("rule", ["{rule: majority}", "{rule: k_of_n, k: 3}",
                                  "{rule: moderator, agent: moderator}", "{rule: no_change}"])
def test_every_rule_validates_and_shows(rule, recipe_file):
    recipe = aidsafe.load_recipe(recipe_file(with_rule(f"agreement: {rule}")))
    assert recipe.stage("deliberation").stop["agreement"]["rule"] in rule


def test_a_variant_switches_rules_by_dropping_the_parents_k(recipe_file):
    ok = recipe_file("extends: aidsafe.yaml\nstages:\n  deliberation:\n    stop: {agreement: {rule: majority, k: null}}\n",
                     "ok.yaml")
    assert aidsafe.load_recipe(ok).stage("deliberation").stop["agreement"] == {"rule": "majority"}
    kept = recipe_file("extends: aidsafe.yaml\nstages:\n  deliberation:\n    stop: {agreement: {rule: majority}}\n",
                       "kept.yaml")
    with pytest.raises(aidsafe.RecipeError) as info:
        aidsafe.load_recipe(kept)
    [problem] = info.value.problems
    assert problem.startswith("recipes/aidsafe.yaml:") and problem.endswith(
        "stages[3].stop.agreement.k: `k` applies to the consecutive and k_of_n rule(s) only; remove it for "
        "`majority` (`k: null` in a recipe that extends one that sets it)")
