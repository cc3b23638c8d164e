"""Judges files that ``extends`` another: merged like recipes, errors at the
line of the file a value came from, parents only inside allowed folders."""

from __future__ import annotations

import pytest

from aidsafe._util.errors import RecipeError
from aidsafe.evaluation._judge_specs import is_judges_file, load_judges

from ..conftest import ROOT

PARENT = """name: base-judges
models:
  default: {model: "fake:test"}
judges:
  relevance:
    kind: pointwise
    inputs: [query, cot]
    instructions: Rate relevance 1-5.
  coherence:
    kind: pointwise
    inputs: [cot]
    instructions: Rate coherence 1-5.
"""


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_variant_merges_over_its_parent(tmp_path):
    write(tmp_path, "base.yaml", PARENT)
    child = write(tmp_path, "strict.yaml", """extends: base.yaml
models:
  default: {temperature: 0.0}
judges:
  coherence: null
  relevance: {instructions: Rate relevance 1-5. Be strict.}
  completeness: {kind: pointwise, inputs: [query, cot], instructions: Rate completeness 1-5.}
""")
    judges = load_judges(child)
    assert judges.name == "strict"  # named after its file, like a recipe variant
    assert judges.names() == ["relevance", "completeness"]
    assert judges.get("relevance").instructions == "Rate relevance 1-5. Be strict."
    assert judges.get("relevance").inputs == ("query", "cot")  # kept from the parent
    assert judges.models["default"].model == "fake:test" and judges.models["default"].params == {"temperature": 0.0}
    assert is_judges_file(child)


def test_a_variant_that_only_changes_models_is_a_judges_file(tmp_path):
    write(tmp_path, "base.yaml", PARENT)
    child = write(tmp_path, "big.yaml", "extends: base.yaml\nmodels:\n  default: {model: openai/gpt-4o-mini}\n")
    assert is_judges_file(child)
    assert load_judges(child).models["default"].model == "openai/gpt-4o-mini"


def test_the_shipped_judges_can_be_extended_by_name(tmp_path):
    child = write(tmp_path, "mine.yaml", "extends: judges\nname: mine\njudges: {preference: null}\n")
    judges = load_judges(child)
    assert "preference" not in judges.judges and "relevance" in judges.judges


def test_an_error_points_at_the_file_and_line_the_value_came_from(tmp_path):
    write(tmp_path, "base.yaml", PARENT.replace("inputs: [cot]", "inputs: [cot, thoughts]"))
    child = write(tmp_path, "child.yaml", "extends: base.yaml\njudges:\n  relevance: {kind: pointwse}\n")
    with pytest.raises(RecipeError) as info:
        load_judges(child)
    assert info.value.problems == [
        f"{child}:3 judges.relevance.kind: expected one of pointwise, pairwise, label, rubric, found \"pointwse\"; "
        "did you mean 'pointwise'?",
        f"{tmp_path / 'base.yaml'}:11 judges.coherence.inputs[1]: expected one of query, cot, response, policies, "
        "found \"thoughts\"",
    ]


def test_an_extends_cycle_is_an_error_with_its_line(tmp_path):
    a = write(tmp_path, "a.yaml", "# a\nextends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(RecipeError) as info:
        load_judges(a)
    b = tmp_path / "b.yaml"
    assert info.value.problems == [f"{b}:1 extends: an extends cycle {a} -> {b} -> {a}; "
                                   "remove one of the `extends:` lines"]


@pytest.mark.parametrize(("ref", "expected"), [
    ("../outside.yaml", "extends: the parent judges file '../outside.yaml' resolves to {outside}, outside the "
                        "allowed folders ({recipes}, {folder}); move the file into one of them"),
    ("missing.yaml", "extends: 'missing.yaml' not found (looked at '{folder}/missing.yaml')"),
    ("[a, b]", "extends: expected a path string such as judges.yaml, found list"),
    ("x" * 300 + ".yaml", "extends: '" + "x" * 300 + ".yaml' is not a usable file name ([Errno 36] File name too "
                          "long: '{folder}/" + "x" * 300 + ".yaml'); name the parent judges file by its file name"),
])
def test_a_bad_parent_is_an_error_with_its_line(ref, expected, tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    write(tmp_path, "outside.yaml", PARENT)
    child = write(folder, "child.yaml", f"name: c\nextends: {ref}\n")
    with pytest.raises(RecipeError) as info:
        load_judges(child)
    text = expected.format(outside=tmp_path / "outside.yaml", recipes=ROOT / "recipes", folder=folder)
    assert info.value.problems == [f"{child}:2 {text}"]


def test_without_extends_every_required_key_is_still_required(tmp_path):
    path = write(tmp_path, "j.yaml", "name: j\nmodels:\n  default: {temperature: 0}\njudges:\n  r: {kind: label}\n")
    with pytest.raises(RecipeError) as info:
        load_judges(path)
    assert info.value.problems == [
        f"{path}:3 models.default: missing required key 'model'; add `model:` here",
        f"{path}:5 judges.r: missing required key 'instructions'; add `instructions:` here",
        f"{path}:5 judges.r: missing required key 'inputs'; add `inputs:` here",
    ]
