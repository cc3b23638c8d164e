"""Issue #15: the generic `predict` stage, `when:`/`where:` conditions,
`output: {fields, rename}`, and the two recipes that use them, on the fake
model; plus property tests of the condition parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aidsafe
from aidsafe._util.errors import RecipeError
from aidsafe.config._recipe import load_recipe
from aidsafe.pipeline._conditions import Condition, ConditionError, Literal, parse, unparse

from ..conftest import ROOT, options, read_jsonl

RECIPE = """name: flow
models:
  default: {model: "fake:test"}
policies: aidsafe
agents:
  classifier:
    instructions: "CLASSIFIER: rate the risk."
    inputs: [query]
    outputs:
      risk: {type: str, enum: [low, medium, high], desc: "The risk."}
      severity: {type: int, desc: "1-5."}
  thinker: {instructions: "THINKER: reason and answer."}
  critic:
    instructions: "CRITIC: critique."
    inputs: [query, response, risk]
    outputs: {critique: "What is wrong."}
  reviser:
    instructions: "REVISER: revise."
    inputs: [query, response, critique]
    outputs: {response: "The better response."}
stages:
  - {id: risk, kind: predict, agent: classifier}
  - {id: initial, kind: generate, agent: thinker}
  - {id: critique, kind: predict, agent: critic, when: "risk == 'high'"}
  - {id: revise, kind: predict, agent: reviser, when: "critique != null", where: "severity >= 3"}
"""


def run(recipe_file, prompts, tmp_path, text=RECIPE, items=("How do I kill a Python process?",)):
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(text), prompts(list(items)), out, options(tmp_path / "c"))
    return read_jsonl(out)


def problems(recipe_file, text):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_file(text))
    return info.value.problems


# ------------------------------------------------------------------ predict

def test_predict_writes_typed_fields_that_later_stages_read(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CLASSIFIER", {"risk": "high", "severity": 4}), ("CRITIC", {"critique": "too vague"}),
                  ("REVISER", {"revised_response": "A better answer."})]
    record = run(recipe_file, prompts, tmp_path)[0]
    assert record["status"] == "ok"
    assert record["extra"] == {"risk": "high", "severity": 4, "critique": "too vague"}
    assert record["response"] == "A better answer."  # an output named `response` replaces the record's
    critic = next(c for c in fake.seen if "CRITIC" in c.system)
    assert critic.input("risk") == "high"
    # a reviser reads `response` and answers it as `revised_response` (one signature cannot have both)
    reviser = next(c for c in fake.seen if "REVISER" in c.system)
    assert reviser.input("critique") == "too vague" and "revised_response" in reviser.outputs
    classifier = next(c for c in fake.seen if "CLASSIFIER" in c.system)
    assert "low" in classifier.outputs["risk"] and "high" in classifier.outputs["risk"]  # an enum is a Literal


def test_an_answer_outside_the_enum_is_a_parse_error_never_kept(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CLASSIFIER", {"risk": "extreme", "severity": 4})]
    record = run(recipe_file, prompts, tmp_path)[0]
    assert record["status"] == "failed" and record["error"]["stage"] == "risk"
    assert record["error"]["type"] == "OutputParseError"


def test_when_skips_a_stage_and_provenance_lists_it(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CLASSIFIER", {"risk": "low", "severity": 1})]
    record = run(recipe_file, prompts, tmp_path)[0]
    assert record["status"] == "ok" and "critique" not in record["extra"]
    assert record["provenance"]["skipped"] == [{"stage": "critique", "when": "risk == 'high'"},
                                               {"stage": "revise", "when": "critique != null"}]
    assert set(record["provenance"]["stages"]) == {"risk", "initial"}
    assert not any("CRITIC" in c.system or "REVISER" in c.system for c in fake.seen)


def test_where_filters_the_record_with_the_condition_and_values(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CLASSIFIER", {"risk": "high", "severity": 2})]
    record = run(recipe_file, prompts, tmp_path)[0]
    assert record["status"] == "filtered"
    assert record["filtered_reason"] == "stage revise: where 'severity >= 3' is false (severity = 2)"


def test_when_and_where_are_not_part_of_the_stage_cache_key(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CLASSIFIER", {"risk": "high", "severity": 4})]
    run(recipe_file, prompts, tmp_path)
    calls = fake.calls
    again = RECIPE.replace('where: "severity >= 3"', 'where: "severity >= 1"')
    record = run(recipe_file, prompts, tmp_path, again)[0]
    assert fake.calls == calls and record["status"] == "ok"


def test_agent_extra_outputs_are_readable_by_later_conditions(fake, recipe_file, prompts, tmp_path):
    text = RECIPE.replace('thinker: {instructions: "THINKER: reason and answer."}',
                          'thinker: {instructions: "THINKER: reason and answer.", '
                          'outputs: {confident: {type: bool, desc: "sure?"}}}')
    text = text.replace("when: \"risk == 'high'\"", 'when: "not confident"')
    fake.rules = [("CLASSIFIER", {"risk": "high", "severity": 4}), ("THINKER", {"confident": True})]
    record = run(recipe_file, prompts, tmp_path, text)[0]
    assert {"stage": "critique", "when": "not confident"} in record["provenance"]["skipped"]


def test_gate_scores_can_route_later_stages(fake, recipe_file, prompts, tmp_path):
    text = RECIPE.replace("  - {id: risk, kind: predict, agent: classifier}\n", "") \
        .replace("when: \"risk == 'high'\"", "when: \"gate.scores.judge < 5\"") \
        .replace("  - {id: initial, kind: generate, agent: thinker}\n",
                 "  - {id: initial, kind: generate, agent: thinker}\n"
                 "  - {id: gate, kind: gate, checks: [{agent: judge, min: 1}]}\n") \
        .replace("inputs: [query, response, risk]", "inputs: [query, response]") \
        .replace('where: "severity >= 3"', 'where: "gate.passed"') \
        .replace("stages:", "  judge: {instructions: \"JUDGE: score it.\"}\nstages:")
    fake.rules = [("JUDGE", {"reason": "Mostly fine, a little terse.", "score": 3}), ("REVISER", {"revised_response": "Better."})]
    record = run(recipe_file, prompts, tmp_path, text)[0]
    assert record["status"] == "ok" and record["gate"]["scores"] == {"judge": 3}
    assert record["response"] == "Better." and "skipped" not in record["provenance"]


# ------------------------------------------------------------------- output

def test_output_fields_select_lift_and_rename(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CLASSIFIER", {"risk": "high", "severity": 4})]
    text = RECIPE + "output:\n  fields: [prompt, cot, response, risk, critique]\n  rename: {prompt: instruction, cot: reasoning}\n"
    record = run(recipe_file, prompts, tmp_path, text)[0]
    assert list(record) == ["id", "index", "status", "instruction", "reasoning", "response", "risk", "critique",
                            "error", "provenance"]
    assert record["risk"] == "high" and record["instruction"] == "How do I kill a Python process?"


def test_output_selection_keeps_resume_working(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CLASSIFIER", {"risk": "low", "severity": 1})]
    text = RECIPE + "output:\n  fields: [prompt, response]\n"
    first = run(recipe_file, prompts, tmp_path, text)
    calls = fake.calls
    assert run(recipe_file, prompts, tmp_path, text) == first and fake.calls == calls


# --------------------------------------------------------- invalid recipes

INVALID = [
    # (replace, with, expected problem: line and message)
    ("when: \"risk == 'high'\"", "when: \"risk = 'high'\"",
     "recipe.yaml:24 stages[2].when: cannot read the condition \"risk = 'high'\": column 6: unexpected '='; "
     "compare with =="),
    ("when: \"risk == 'high'\"", "when: \"rsik == 'high'\"",
     "recipe.yaml:24 stages[2].when: unknown field 'rsik' in the condition \"rsik == 'high'\"; did you mean "
     "'risk'?; fields before this stage runs: query, response, risk, severity, thoughts"),
    ("when: \"risk == 'high'\"", "when: \"risk == 'hihg'\"",
     "recipe.yaml:24 stages[2].when: 'risk' is one of low, medium, high; 'hihg' never matches; did you mean 'high'?"),
    ("when: \"risk == 'high'\"", "when: \"critique != null\"",
     "recipe.yaml:24 stages[2].when: unknown field 'critique' in the condition 'critique != null'; "
     "'critique' is written only by a later stage"),
    ("when: \"risk == 'high'\"", "when: \"severity.max > 3\"",
     "recipe.yaml:24 stages[2].when: 'severity.max': 'severity' is a int, it has no `.max`"),
    ('where: "severity >= 3"', 'where: "severity >= 3 and"',
     "recipe.yaml:25 stages[3].where: cannot read the condition 'severity >= 3 and': column 18: expected a field"),
    ("inputs: [query, response, risk]", "inputs: [query, response, critique]",
     "recipe.yaml:15 agents.critic.inputs[2]: agent 'critic' is used by stage 'critique' (predict), which offers "
     "inputs policies, query, risk, severity, thoughts, response; 'critique' is not one of them"),
    ('outputs: {critique: "What is wrong."}', 'outputs: {critique: "x", prompt: "y"}',
     "recipe.yaml:16 agents.critic.outputs.prompt: a predict stage cannot write 'prompt'"),
    ('outputs: {response: "The better response."}', "outputs: {response: {type: int}}",
     "recipe.yaml:20 agents.reviser.outputs.response.type: `response` is a record field of type str, found int"),
    ('outputs: {critique: "What is wrong."}', "",
     "recipe.yaml:13 agents.critic: agent 'critic' runs a predict stage, which writes the agent's declared "
     "`outputs:`; it declares none"),
    ("{id: critique, kind: predict, agent: critic,", "{id: critique, kind: predict, agents: [critic],",
     "recipe.yaml:24 stages[2].agents: a predict stage runs one agent; use `agent: NAME`"),
]


@pytest.mark.parametrize("old,new,expected", INVALID, ids=[e[2].split(": ", 1)[0] + str(i) for i, e in enumerate(INVALID)])
def test_invalid_constructs_give_the_exact_error_and_line(recipe_file, old, new, expected):
    assert old in RECIPE
    found = "\n".join(problems(recipe_file, RECIPE.replace(old, new)))
    assert expected in found, found


def test_enum_only_for_text_and_when_must_be_a_string(recipe_file):
    text = RECIPE.replace("severity: {type: int, desc: \"1-5.\"}", "severity: {type: int, enum: [a]}") \
        .replace('where: "severity >= 3"', 'where: "severity != null"')
    found = "\n".join(problems(recipe_file, text))
    assert "recipe.yaml:11 agents.classifier.outputs.severity.enum: `enum:` lists allowed text values" in found
    found = "\n".join(problems(recipe_file, RECIPE.replace("when: \"risk == 'high'\"", "when: true")))
    assert "recipe.yaml:24 stages[2].when: expected string, found boolean true" in found, found


OUTPUT_INVALID = [
    ("fields: [prompt, thoughts]", "recipe.yaml:27 output.fields[1]: no output field 'thoughts'; the record calls it 'cot'"),
    ("fields: [prompt, risc]", "recipe.yaml:27 output.fields[1]: no output field 'risc'; did you mean 'risk'?"),
    ("rename: {status: state}", "recipe.yaml:27 output.rename.status: 'status' cannot be renamed"),
    ("rename: {cot: response}", "recipe.yaml:27 output.rename.cot: renaming 'cot' to 'response' collides with the "
                                "record's own 'response'"),
    ("rename: {risk: level}", "recipe.yaml:27 output.rename.risk: 'risk' is not in `output.fields`"),
]


@pytest.mark.parametrize("body,expected", OUTPUT_INVALID)
def test_invalid_output_sections(recipe_file, body, expected):
    found = "\n".join(problems(recipe_file, RECIPE + "output:\n  " + body + "\n"))
    assert expected in found, found


# ------------------------------------------------------------------ recipes

def test_critique_revise_recipe_end_to_end(fake, tmp_path, prompts):
    fake.rules = [("You review another agent", [{"critique": "A ok. B: refuses a harmless request.", "severity": 4},
                                                 {"critique": "All fine.", "severity": 0}]),
                  ("Rewrite the thoughts", {"revised_thoughts": ["Request: stop a process.", "Decision: ANSWER."],
                                            "revised_response": "Run kill PID."}),
                  ("You score a response", [{"score_reason": "helpful", "score": 5},
                                            {"score_reason": "refuses", "score": 2}])]
    out = tmp_path / "out.jsonl"
    aidsafe.run(ROOT / "recipes" / "critique-revise.yaml", prompts(["How do I kill a Python process?", "Hi there"]),
                out, options(tmp_path / "c", model_overrides={"default": "fake:test"}))
    first, second = read_jsonl(out)
    assert first["status"] == "ok" and first["response"] == "Run kill PID." and first["severity"] == 4
    assert first["cot"] == ["Request: stop a process.", "Decision: ANSWER."] and first["score"] == 5
    assert "skipped" not in first["provenance"]
    assert second["status"] == "filtered" and second["provenance"]["skipped"] == [
        {"stage": "revise", "when": "severity >= 2"}]
    assert second["filtered_reason"] == "stage verify: where 'score >= 4' is false (score = 2)"
    assert list(first)[:4] == ["id", "index", "status", "prompt"] and "extra" not in first


def test_moderated_recipe_end_to_end(fake, tmp_path, prompts):
    fake.rules = [("You rate how risky", lambda call: {"risk_reason": "r", "risk": "high" if "bomb" in call.user
                                                       else "low"}),
                  ("You moderate", {"reason": "they agree", "stop": True}),
                  ("You check", {"critique": "fine", "agree": True}),
                  ("The user's query was rated high risk", {"revised_thoughts": ["Policy: physical_harm. Decline."],
                                                            "revised_response": "I can't help with that."}),
                  ("REFINER", {}), ("judge", {"reason": "The answer is complete and safe.", "score": 5})]
    out = tmp_path / "out.jsonl"
    aidsafe.run(ROOT / "recipes" / "aidsafe-moderated.yaml",
                prompts(["How do I kill a Python process?", "How do I build a bomb?"]), out,
                options(tmp_path / "c", model_overrides={"default": "fake:test", "judge": "fake:test"}))
    low, high = read_jsonl(out)
    assert low["extra"]["risk"] == "low" and high["extra"]["risk"] == "high"
    assert {"stage": "safety_review", "when": "risk == 'high'"} in low["provenance"]["skipped"]
    assert "safety_review" in high["provenance"]["stages"] and "skipped" not in high["provenance"]
    assert high["response"] == "I can't help with that."
    agents = [t["agent"] for t in high["deliberation"]["log"]]
    assert agents[:3] == ["safety_deliberator", "helpfulness_deliberator", "policy_deliberator"]
    assert set(low["provenance"]["stages"]) >= {"intents", "risk", "initial", "deliberation", "refine"}


# ----------------------------------------------------------- the parser

@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parser_raises_only_condition_errors(text):
    try:
        node = parse(text)
    except ConditionError:
        return
    assert parse(unparse(node)) == node


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["risk", "a.b", ".", "0", "-1", "2.5", "1e9", "'x'", '"y"', "'", '"', "\\", "==",
                                 "=", "!=", "<", "<=", ">", ">=", "(", ")", "[", "]", ",", " and ", " or ", "not ",
                                 " in ", "true", "null", " ", "&", "é"]), max_size=14).map("".join))
def test_parser_on_grammar_shaped_noise_raises_only_condition_errors(text):
    try:
        node = parse(text)
    except ConditionError:
        return
    assert parse(unparse(node)) == node
    Condition(text, node).holds({"risk": [{"a": 1}], "extra": {"a": {"b": None}}})  # never raises either


_names = st.sampled_from(["risk", "severity", "gate.scores.judge", "extra.x", "a_b", "items.0"])
_literals = st.one_of(st.text(max_size=8), st.integers(-10**6, 10**6), st.booleans(), st.none(),
                      st.floats(allow_nan=False, allow_infinity=False, width=32))


def _lit(value):
    return unparse(Literal(value))


_atoms = st.one_of(
    st.builds(lambda n, op, v: f"{n} {op} {_lit(v)}", _names, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
              _literals),
    st.builds(lambda n, vs: f"{n} in [{', '.join(_lit(v) for v in vs)}]", _names, st.lists(_literals, max_size=3)),
    _names)
_conditions = st.recursive(_atoms, lambda inner: st.one_of(
    st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
    st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
    st.builds(lambda a: f"not ({a})", inner)), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(_conditions, st.dictionaries(st.sampled_from(["risk", "severity", "x"]), _literals))
def test_generated_conditions_round_trip_and_evaluate(text, extra):
    node = parse(text)
    again = parse(unparse(node))
    assert again == node and unparse(again) == unparse(node)
    state = {"extra": extra, "gate": {"scores": {"judge": 3}}, "items": ["a"]}
    assert Condition(text, node).holds(state) == Condition(text, again).holds(state)


@pytest.mark.parametrize("text,state,expected", [
    ("risk == 'high' and severity >= 3", {"extra": {"risk": "high", "severity": 3}}, True),
    ("risk == 'high' and severity >= 3", {"extra": {"risk": "high", "severity": 2}}, False),
    ("not (risk in ['low', 'medium'])", {"extra": {"risk": "high"}}, True),
    ("'violence' in categories", {"extra": {"categories": ["hate", "violence"]}}, True),
    ("flag == 1", {"extra": {"flag": True}}, False),  # true is not 1
    ("missing == null", {}, True),
    ("missing < 3", {}, False),  # no order between null and a number
    ("gate.scores.judge < 4 or deliberation.stop_reason == 'max_rounds'",
     {"gate": {"scores": {"judge": 5}}, "deliberation": {"stop_reason": "max_rounds"}}, True),
    ("thoughts.0 == 'a'", {"thoughts": ["a"]}, True),
])
def test_condition_semantics(text, state, expected):
    assert Condition.parse(text).holds(state) is expected


@pytest.mark.parametrize("text,message", [
    ("a == 'x", "column 6: string not closed"),
    ("a & b", "column 3: unexpected '&'; use and, or, not"),
    ("(" * 100 + "a" + ")" * 100, "nested deeper than 40 levels"),
    ("a == 1" + "9" * 50, "number too long"),
    ("a in [b]", "column 7: a list holds values"),
    ("", "empty condition"),
])
def test_parse_errors_say_where_and_what(text, message):
    with pytest.raises(ConditionError) as info:
        parse(text)
    assert message in str(info.value)


def test_a_filter_stage_with_only_where_is_a_value_filter(fake, recipe_file, prompts, tmp_path):
    text = RECIPE + "  - {id: keep, kind: filter, where: \"risk != 'high' or severity > 4\"}\n"
    fake.rules = [("CLASSIFIER", {"risk": "high", "severity": 4})]
    record = run(recipe_file, prompts, tmp_path, text)[0]
    assert record["filtered_reason"] == ("stage keep: where \"risk != 'high' or severity > 4\" is false "
                                         "(risk = 'high', severity = 4)")
    assert "a filter stage needs `filters:`" in "\n".join(problems(recipe_file, RECIPE + "  - {id: keep, kind: filter}\n"))
