"""The one YAML loader: bounded, strict about keys, and still YAML (anchors,
merge keys and a byte-order mark keep working)."""

from __future__ import annotations

import pytest

from aidsafe._util.errors import RecipeError
from aidsafe.config._recipe import load_recipe
from aidsafe.config._yaml import load_yaml, load_yaml_file

from ..conftest import MINI


def test_merge_keys_and_aliases_still_load_with_lines():
    located = load_yaml("base: &b {model: x, temperature: 0.1}\nfast:\n  <<: *b\n  temperature: 0.9\n", "m.yaml")
    assert located.data["fast"] == {"model": "x", "temperature": 0.9}
    assert located.where(("fast", "temperature")) == ("m.yaml", 4)  # the explicit key, not the merged one
    assert located.where(("fast", "model")) == ("m.yaml", 1)  # where the merged value was written


def test_duplicate_keys_name_both_lines_and_every_duplicate():
    with pytest.raises(RecipeError) as info:
        load_yaml("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", "d.yaml")
    assert info.value.problems == [
        "d.yaml:4 b.c: duplicate key 'c' (first at line 3); YAML keeps only the last one: remove or merge one of them",
        "d.yaml:5 a: duplicate key 'a' (first at line 1); YAML keeps only the last one: remove or merge one of them"]


@pytest.mark.parametrize("text, found", [("1: x\n", "int"), ("yes: x\n", "bool"), ("null: x\n", "null"),
                                         ("? [a]\n: x\n", None)])
def test_keys_must_be_text(text, found):
    with pytest.raises(RecipeError, match=r"k\.yaml:1 \(top level\): ") as info:
        load_yaml(text, "k.yaml")
    assert (f"is read as {found}, not text; quote it" if found else "a key must be text, found a list") \
        in str(info.value)


def test_a_byte_order_mark_is_fine_and_control_characters_are_not(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: x\n")
    assert load_yaml_file(path).data == {"name": "x"}
    with pytest.raises(RecipeError, match=r"c\.yaml:2: control character U\+0007 is not allowed"):
        load_yaml("a: 1\nb: \x07\n", "c.yaml")


def test_non_utf8_recipe_names_line_and_column(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(RecipeError, match=r"latin1\.yaml:2: not UTF-8 text \(byte 0xe9 at column 17"):
        load_recipe(path)


def test_a_key_with_a_line_break_stays_on_one_problem_line(recipe_file):
    path = recipe_file(MINI.replace("  thinker:", '  "think\\u2028er":'))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert all(problem.count("\n") == 0 and "\u2028" not in problem for problem in info.value.problems)
    assert len(str(info.value).splitlines()) == len(info.value.problems) + 1


def test_schema_and_registry_problems_come_together_without_duplicates(recipe_file):
    # a stage without `kind` is one problem (the schema's), not also "unknown stage kind None"
    path = recipe_file(MINI.replace("kind: decompose, ", "").replace("kind: refine", "kind: refin"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert "stages[0]: missing required key 'kind'" in problems[0]
    assert "stages[3].kind: unknown stage kind 'refin'; did you mean 'refine'?" in problems[1]


def test_a_malformed_value_does_not_stop_the_other_checks(recipe_file):
    path = recipe_file(MINI.replace("stop: {max_rounds: 3, agreement: {rule: consecutive, k: 2}}", "stop: often")
                       .replace("agent: refiner", "agent: refinr"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    text = str(info.value)
    assert "stages[2].stop: expected object, found string" in text
    assert "stages[3].agent: unknown agent 'refinr'; did you mean 'refiner'?" in text


def test_validate_reads_the_prompts_folder_as_run_does(recipe_file, tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "prompts.json").write_text('{"agents": {"thinker": {"instructions": "x", "demos": []}}}')
    assert load_recipe(recipe_file(MINI + "prompts: p\n")).prompts == "p"
    with pytest.raises(RecipeError, match=r"recipe\.yaml:\d+ prompts: prompts folder '\.\./\.\./\.\./etc' resolves"):
        load_recipe(recipe_file(MINI + "prompts: ../../../etc\n"))


def test_required_fields_accept_declared_outputs(recipe_file):
    text = MINI.replace('critic_a: {instructions: "CRITIC_A: check safety."}',
                        'critic_a: {instructions: "CRITIC_A", outputs: {severity: {type: int, desc: "1-5"}}}')
    ok = text.replace("filters: [{type: dedupe}]", "filters: [{type: required_fields, fields: [severity, intents]}]")
    assert load_recipe(recipe_file(ok)).stages[-1].raw["filters"][0]["fields"] == ["severity", "intents"]
    early = text.replace("  - {id: initial, kind: generate, agent: thinker}\n",
                         "  - {id: initial, kind: generate, agent: thinker}\n"
                         "  - {id: check, kind: filter, filters: {before: [{type: required_fields, fields: [nope]}]}}\n")
    with pytest.raises(RecipeError, match=r"stages\[2\]\.filters\.before\[0\]\.fields\[0\]: no record field 'nope'"):
        load_recipe(recipe_file(early))


def test_output_names_dspy_signatures_take_are_refused_and_the_list_is_current(recipe_file):
    """SIGNATURE_ATTRIBUTES must name exactly the public names that break a
    signature in the installed DSPy (besides pydantic's `model_*`)."""
    import warnings

    import dspy
    import pydantic

    from aidsafe.config._recipe import SIGNATURE_ATTRIBUTES

    def builds(name):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sig = dspy.make_signature({"query": (str, dspy.InputField(desc="q")),
                                           name: (str, dspy.OutputField(desc="x"))}, "inst")
                dspy.Predict(sig)
            return name in sig.output_fields and sig.instructions == "inst"
        except Exception:
            return False

    candidates = {n for n in dir(type(dspy.Signature)) + dir(dspy.Signature) + dir(pydantic.BaseModel)
                  if not n.startswith("_") and not n.startswith("model_")}
    assert {n for n in candidates if not builds(n)} == set(SIGNATURE_ATTRIBUTES)
    for name in ("instructions", "model_config"):
        path = recipe_file(MINI.replace('analyst: {instructions: "ANALYST: list the intents."}',
                                        f'analyst: {{instructions: "A", outputs: {{{name}: "x"}}}}'))
        with pytest.raises(RecipeError, match=rf"agents\.analyst\.outputs\.{name}: output name '{name}' is taken"):
            load_recipe(path)
