"""The stages that keep the method honest (issue 13): deliberation logs what
really happened, the refiner only selects, deterministic quality filters, and
the judge gate. All on the scripted fake model through DSPy's JSONAdapter."""

from __future__ import annotations

import json

import pytest

import aidsafe
from aidsafe.config import load_policy_set, load_recipe

from ..conftest import MINI, options, read_jsonl

POLICY_SENTENCE = load_policy_set("aidsafe").policies[0].statement.strip()


def run_one(recipe_file, prompts, tmp_path, text=MINI, prompt="How do I kill a Python process?"):
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(text), prompts([prompt]), out, options(tmp_path / "c"))
    return read_jsonl(out)[0]


THINKER = ("THINKER", {"thoughts": ["The user wants to stop a program.", "This is routine and allowed."],
                       "response": "Run `kill <pid>`."})


def test_the_deliberator_writes_its_critique_before_deciding(fake, recipe_file):
    recipe = load_recipe(recipe_file(MINI))
    program = aidsafe.compile_recipe(recipe, aidsafe.build_models(recipe.models, aidsafe.Cache(recipe.path.parent / "c")))
    critic = program.stages["deliberation"].deliberators[0]
    assert critic.output_names[:2] == ["critique", "agree"]


def test_agreement_is_only_claimed_when_the_agents_said_so(fake, recipe_file, prompts, tmp_path):
    fake.rules = [THINKER, ("CRITIC_", {"critique": "Allowed; the answer is right.", "agree": True})]
    record = run_one(recipe_file, prompts, tmp_path)
    delib = record["deliberation"]
    assert delib["stop_reason"] == "agreement" and delib["changed"] is False
    assert [(t["action"], t["agree"]) for t in delib["log"]] == [("agree", True), ("agree", True)]
    assert delib["log"][0]["critique"] == "Allowed; the answer is right."


def test_a_disagreement_without_a_change_is_an_endorsement_not_agreement(fake, recipe_file, prompts, tmp_path):
    fake.rules = [THINKER, ("CRITIC_", {"critique": "Hmm.", "agree": False, "revised_thoughts": [],
                                        "revised_response": ""})]
    record = run_one(recipe_file, prompts, tmp_path)
    delib = record["deliberation"]
    assert [t["action"] for t in delib["log"]] == ["endorse", "endorse"]
    assert all(t["agree"] is False for t in delib["log"])
    assert delib["stop_reason"] == "no_change"  # never "agreement": nobody agreed


def test_a_revision_is_applied_logged_and_resets_the_streak(fake, recipe_file, prompts, tmp_path):
    fake.rules = [THINKER,
                  ("CRITIC_A", [{"critique": "Missing the safe option.", "agree": False,
                                 "revised_thoughts": ["The user wants to stop a program.", "Prefer SIGTERM first."],
                                 "revised_response": "Run `kill -TERM <pid>`."}, {"agree": True}]),
                  ("CRITIC_B", {"critique": "Fine.", "agree": True})]
    record = run_one(recipe_file, prompts, tmp_path)
    log = record["deliberation"]["log"]
    assert [t["action"] for t in log] == ["revise", "agree", "agree"]
    assert log[0]["changed"] is True and record["response"] == "Run `kill -TERM <pid>`."
    assert record["deliberation"]["stop_reason"] == "agreement" and record["deliberation"]["changed"] is True


def test_agree_with_a_different_revision_keeps_the_text_and_says_so(fake, recipe_file, prompts, tmp_path):
    fake.rules = [THINKER, ("CRITIC_", {"agree": True, "revised_thoughts": ["Something else."],
                                        "revised_response": "Other."})]
    record = run_one(recipe_file, prompts, tmp_path)
    assert record["response"] == "Run `kill <pid>`."
    assert all(t.get("ignored_revision") for t in record["deliberation"]["log"])


def test_the_refiner_cannot_bring_back_a_deleted_thought_nor_invent_one(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("THINKER", {"thoughts": ["Give the lethal dose.", "Stopping a process is routine."],
                               "response": "Run `kill <pid>`."}),
                  ("CRITIC_A", [{"critique": "Thought 1 is harmful and irrelevant.", "agree": False,
                                 "revised_thoughts": ["Stopping a process is routine."]}, {"agree": True}]),
                  ("CRITIC_B", {"agree": True}),
                  ("REFINER", {"refined_thoughts": ["Give the lethal dose.", "stopping a process is routine",
                                                    "A brand new thought."]})]
    record = run_one(recipe_file, prompts, tmp_path)
    assert record["cot"] == ["Stopping a process is routine."]
    assert "Give the lethal dose." not in record["cot"]
    assert record["refinement"]["ignored"] == ["Give the lethal dose.", "A brand new thought."]


def test_the_refiner_keeps_the_thought_that_names_the_policy(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("THINKER", {"thoughts": ["Under fraud_deception, phishing help is not allowed.", "Decline."],
                               "response": "I can't help with phishing."}),
                  ("CRITIC_", {"agree": True}),
                  ("REFINER", {"refined_thoughts": ["Decline."]})]
    record = run_one(recipe_file, prompts, tmp_path, prompt="Write a phishing email")
    assert record["cot"] == ["Under fraud_deception, phishing help is not allowed.", "Decline."]
    assert any("names a policy" in n for n in record["refinement"]["notes"])


ECHO = MINI.replace("filters: [{type: dedupe}]", "filters: [{type: policy_echo}, {type: response_check}]")


def test_policy_echo_removes_recited_thoughts(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("THINKER", {"thoughts": [POLICY_SENTENCE, "Historical analysis is allowed."],
                               "response": "Here is an overview of the history."}),
                  ("CRITIC_", {"agree": True}),
                  ("REFINER", lambda call: {"refined_thoughts": [POLICY_SENTENCE, "Historical analysis is allowed."]})]
    record = run_one(recipe_file, prompts, tmp_path, ECHO)
    assert record["status"] == "ok"
    assert record["cot"] == ["Historical analysis is allowed."]
    assert {"thought": POLICY_SENTENCE, "filter": "policy_echo"} in record["removed"]


def test_a_response_that_recites_the_policy_is_filtered(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("THINKER", {"thoughts": ["Check the policy."], "response": POLICY_SENTENCE}),
                  ("CRITIC_", {"agree": True}), ("REFINER", {"refined_thoughts": ["Check the policy."]})]
    record = run_one(recipe_file, prompts, tmp_path, ECHO)
    assert record["status"] == "filtered" and "copies the policy text" in record["filtered_reason"]


def test_naming_a_policy_or_quoting_a_few_words_is_not_an_echo(fake, recipe_file, prompts, tmp_path):
    short = " ".join(POLICY_SENTENCE.split()[:6])
    fake.rules = [("THINKER", {"thoughts": [f"The policy says: '{short}'.", "Answer."], "response": "Sure."}),
                  ("CRITIC_", {"agree": True}), ("REFINER", lambda call: {"refined_thoughts": [
                      f"The policy says: '{short}'.", "Answer."]})]
    record = run_one(recipe_file, prompts, tmp_path, ECHO)
    assert record["status"] == "ok" and len(record["cot"]) == 2


def test_an_empty_response_is_filtered(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("THINKER", {"thoughts": ["A thought."], "response": ""}),
                  ("CRITIC_", {"agree": True}), ("REFINER", {"refined_thoughts": ["A thought."]})]
    record = run_one(recipe_file, prompts, tmp_path, ECHO)
    assert record["status"] == "filtered" and record["filtered_reason"].endswith("the response is empty")


GATED = MINI + """  - id: gate
    kind: gate
    checks:
      - {agent: policy_judge, min: 4}
      - {agent: refusal_judge}
"""
GATED = GATED.replace("agents:\n", """agents:
  policy_judge: {instructions: "POLICY_JUDGE: does the response follow the policies?", model: judge}
  refusal_judge: {instructions: "REFUSAL_JUDGE: is an allowed request refused?", model: judge}
""", 1).replace("models:\n", "models:\n  judge: {model: \"fake:test\"}\n", 1)


def test_the_gate_passes_good_records_and_keeps_the_scores(fake, recipe_file, prompts, tmp_path):
    fake.rules = [THINKER, ("CRITIC_", {"agree": True}),
                  ("POLICY_JUDGE", {"reason": "It follows the policies.", "score": 5}),
                  ("REFUSAL_JUDGE", {"reason": "The request is answered.", "score": 4})]
    record = run_one(recipe_file, prompts, tmp_path, GATED)
    assert record["status"] == "ok" and record["gate"]["passed"] is True
    assert [(c["agent"], c["score"], c["min"]) for c in record["gate"]["checks"]] == [
        ("policy_judge", 5, 4), ("refusal_judge", 4, 4)]
    assert record["provenance"]["agents"]["policy_judge"] == "judge"


@pytest.mark.parametrize("answer, reason", [
    ({"reason": "Refuses a harmless question.", "score": 2}, "refusal_judge 2 < 4"),
    ({"reason": "Cannot tell.", "score": "maybe"}, "refusal_judge unscored"),
    ({"reason": "Out of range.", "score": 9}, "refusal_judge unscored"),
])
def test_the_gate_filters_low_and_unscored_records_with_reasons(fake, recipe_file, prompts, tmp_path, answer, reason):
    fake.rules = [THINKER, ("CRITIC_", {"agree": True}),
                  ("POLICY_JUDGE", {"reason": "It follows the policies.", "score": 5}), ("REFUSAL_JUDGE", answer)]
    record = run_one(recipe_file, prompts, tmp_path, GATED)
    assert record["status"] == "filtered" and record["filtered_reason"] == f"stage gate: gate: {reason}"
    check = record["gate"]["checks"][1]
    assert check["passed"] is False and answer["reason"] in check["reason"] + check.get("raw", "")
    assert record["gate"]["checks"][0]["score"] == 5  # every check runs: the scores are data



LONG = ("I can't help with stopping that program; it could seriously hurt people. If you're interested in how "
        "programs work, I can explain the basics of operating systems in general terms.")


@pytest.mark.parametrize("reason, why", [
    (LONG, "the reason copies the response instead of judging it"),
    ("The response says: " + LONG, "the reason copies the response instead of judging it"),
    ("5", "the judge gave no reason"),
    ("", "the judge gave no reason"),
    ("1        # note: the value you produce must be a single int value", "the reason repeats the output-format"),
])
def test_a_score_without_a_reason_is_unscored(fake, recipe_file, prompts, tmp_path, reason, why):
    # small models often copy the response into `reason` and score 5: that is no verdict
    thinker = ("THINKER", {"thoughts": ["The user wants to stop a program."], "response": LONG})
    fake.rules = [thinker, ("CRITIC_", {"agree": True}),
                  ("POLICY_JUDGE", {"reason": "It refuses nothing on a Not-allowed list.", "score": 5}),
                  ("REFUSAL_JUDGE", {"reason": reason, "score": 5})]
    record = run_one(recipe_file, prompts, tmp_path, GATED)
    assert record["status"] == "filtered" and record["filtered_reason"] == "stage gate: gate: refusal_judge unscored"
    policy, refusal = record["gate"]["checks"]
    assert policy["score"] == 5 and policy["passed"] is True  # a real reason that quotes nothing
    assert refusal["score"] is None and refusal["raw_score"] == 5 and refusal["reason"].startswith(f"unscored: {why}")


def test_a_reason_that_quotes_a_few_words_of_the_response_counts(fake, recipe_file, prompts, tmp_path):
    thinker = ("THINKER", {"thoughts": ["The user wants to stop a program."], "response": LONG})
    fake.rules = [thinker, ("CRITIC_", {"agree": True}),
                  ("POLICY_JUDGE", {"reason": "Nothing disallowed is given.", "score": 5}),
                  ("REFUSAL_JUDGE", {"reason": "Stopping a program is allowed, yet the response says 'I can't help "
                                               "with stopping that program': an over-refusal.", "score": 1})]
    record = run_one(recipe_file, prompts, tmp_path, GATED)
    assert record["filtered_reason"] == "stage gate: gate: refusal_judge 1 < 4"
    assert record["gate"]["checks"][1]["score"] == 1

def test_gate_checks_name_declared_agents(recipe_file):
    bad = GATED.replace("{agent: refusal_judge}", "{agent: refusal_jugde}")
    with pytest.raises(aidsafe.RecipeError, match=r"stages\[4\]\.checks\[1\]\.agent: unknown agent 'refusal_jugde'"):
        load_recipe(recipe_file(bad))
    with pytest.raises(aidsafe.RecipeError, match="a gate needs `checks:"):
        load_recipe(recipe_file(MINI + "  - {id: gate, kind: gate}\n"))


DEMO_ANSWER = ("I can't help with purging; it can seriously harm your heart and throat. It sounds like a hard time, "
               "and you deserve support: in the US call or text 988.")
DEMO_THOUGHT = "Policy: self_harm. Purging to lose weight is on its Not allowed list for this user."


def demo_recipe(recipe_file, tmp_path, min_words=None):
    folder = tmp_path / "demos"
    folder.mkdir(exist_ok=True)
    (folder / "prompts.json").write_text(json.dumps({"agents": {"thinker": {"demos": [{
        "query": "How can I purge to lose weight?", "policies": "P",
        "thoughts": ["Request: purge to lose weight.", DEMO_THOUGHT], "response": DEMO_ANSWER}]}}}))
    spec = "{type: demo_echo}" if min_words is None else f"{{type: demo_echo, min_words: {min_words}}}"
    return recipe_file(MINI.replace("filters: [{type: dedupe}]", f"filters: [{spec}]") + "prompts: demos\n")


def test_a_response_pasted_from_a_demo_filters_the_record_and_a_pasted_thought_goes(fake, recipe_file, prompts, tmp_path):
    pasted = "I can't help with fraud. It sounds like a hard time, and you deserve support: in the US call or text 988."
    fake.rules = [("THINKER", {"thoughts": [DEMO_THOUGHT, "Request: open a bank account fraudulently."],
                               "response": pasted}),
                  ("CRITIC_", {"agree": True}),
                  ("REFINER", lambda call: {"refined_thoughts": [DEMO_THOUGHT, "Request: open a bank account fraudulently."]})]
    out = tmp_path / "out.jsonl"
    aidsafe.run(demo_recipe(recipe_file, tmp_path), prompts(["How do I commit bank fraud?"]), out, options(tmp_path / "c"))
    record = read_jsonl(out)[0]
    assert record["status"] == "filtered"
    assert record["filtered_reason"].endswith("the response copies an example answer from the demos")
    assert {"thought": DEMO_THOUGHT, "filter": "demo_echo"} in record["removed"]


def test_own_words_and_words_from_the_query_are_not_demo_echoes(fake, recipe_file, prompts, tmp_path):
    # the query itself contains a run of the demo answer: repeating the user's words is not pasting a demo
    query = "Is this right: it sounds like a hard time, and you deserve support: in the US call or text 988?"
    fake.rules = [("THINKER", {"thoughts": ["Request: check a sentence about 988."],
                               "response": "Yes: it sounds like a hard time, and you deserve support: in the US call "
                                           "or text 988 is a kind sentence."}),
                  ("CRITIC_", {"agree": True}), ("REFINER", {"refined_thoughts": ["Request: check a sentence about 988."]})]
    out = tmp_path / "out.jsonl"
    aidsafe.run(demo_recipe(recipe_file, tmp_path), prompts([query]), out, options(tmp_path / "c"))
    record = read_jsonl(out)[0]
    assert record["status"] == "ok" and record["cot"] == ["Request: check a sentence about 988."]


def test_changing_a_demo_reruns_a_stage_with_a_demo_echo_filter(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe = demo_recipe(recipe_file, tmp_path)
    inputs = prompts(["alpha"])
    aidsafe.run(recipe, inputs, tmp_path / "a.jsonl", options(tmp_path / "c"))
    demos = tmp_path / "demos" / "prompts.json"
    demos.write_text(demos.read_text().replace("988", "911"))
    fake.seen.clear()
    summary = aidsafe.run(recipe, inputs, tmp_path / "b.jsonl", options(tmp_path / "c"))
    # the thinker's demo changed: initial reruns (its prompt), so does everything after it
    assert summary.stage_misses >= 1
    loaded = load_recipe(recipe)
    program = aidsafe.compile_recipe(loaded, aidsafe.build_models(loaded.models, aidsafe.Cache(tmp_path / "c")))
    assert "demos" in program.stage_components(program.stages["refine"])
    assert "demos" not in program.stage_components(program.stages["intents"])
    assert any("988" not in t and "911" in t for t in program.demo_texts)
