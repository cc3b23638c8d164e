"""Issue #25: model routing you can see (every model's route before any
call, a warning when some stay on the embedded CPU model, `--model '*=...'`,
compare with a model one recipe lacks) and runs that never mix models."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import aidsafe
from aidsafe._util.errors import UserError
from aidsafe.cli._main import main
from aidsafe.config._recipe import load_recipe
from aidsafe.models._routing import routing_report
from aidsafe.tools._compare import compare_recipes

from ..conftest import MINI, ROOT, options, read_jsonl

JUDGED = MINI.replace('models:\n  default: {model: "fake:test"}',
                      'models:\n  default: {model: "fake:test"}\n  judge: {model: "local:default"}')


def test_every_model_is_named_and_a_local_judge_left_behind_is_a_warning():
    recipe = load_recipe(ROOT / "recipes" / "aidsafe.yaml")
    lines, warnings = routing_report(recipe, {"default": "openai/x"}, "http://10.0.0.5:8080/v1")
    assert "  default    openai/x  [remote @ 10.0.0.5:8080]" in "\n".join(lines)
    assert any(line.startswith("  judge      local:default  [embedded CPU (llama.cpp)]") for line in lines)
    assert len(warnings) == 1 and warnings[0].startswith("warning: judge (local:default, agents policy_judge")
    assert "--model judge=openai/x (or --model '*=openai/x' for every model)" in warnings[0]
    assert "embed (" not in warnings[0]  # the precedent search's own embedder stays local on purpose
    # '*' repoints every model: nothing is left behind
    lines, warnings = routing_report(recipe, {"*": "openai/x"}, "http://10.0.0.5:8080/v1")
    assert warnings == [] and sum("openai/x" in line for line in lines) == 3
    # without --model/--api-base the recipe's own routing is not a surprise
    assert routing_report(recipe)[1] == []


def test_run_and_plan_print_the_routes_before_any_call(fake, recipe_file, prompts, tmp_path):
    path, inputs = recipe_file(JUDGED), prompts(["q one?"])
    runner = CliRunner()
    plan = runner.invoke(main, ["run", str(path), "-i", str(inputs), "--plan", "--model", "default=fake:test",
                                "--cache-dir", str(tmp_path / "c")])
    assert plan.exit_code == 0, plan.output
    assert "models:\n  default    fake:test  [fake]" in plan.output
    assert "judge      local:default  [embedded CPU (llama.cpp)]" in plan.output
    assert "warning: judge (local:default) stays on the embedded CPU model while default points at fake:test" \
        in plan.output
    # '*=' reaches the judge too (nothing loads the embedded model)
    out = tmp_path / "out.jsonl"
    ran = runner.invoke(main, ["run", str(path), "-i", str(inputs), "-o", str(out), "--model", "*=fake:test",
                               "-q", "--cache-dir", str(tmp_path / "c")])
    assert ran.exit_code == 0, ran.output
    models = read_jsonl(out)[0]["provenance"]["models"]
    assert models["judge"] == models["default"] and models["judge"]["backend"] == "fake"


def test_a_resume_with_other_models_is_refused_with_the_fix(fake, recipe_file, prompts, tmp_path, monkeypatch):
    from aidsafe.models._engine import register_engine, unregister_engine
    from aidsafe.testing.fake import FakeEngine

    other = FakeEngine(name="other")
    register_engine("other", lambda spec: other)
    try:
        path, inputs = recipe_file(MINI), prompts(["q one?", "q two?", "q three?", "q four?"])
        out = tmp_path / "out.jsonl"
        aidsafe.run(path, inputs, out, options(tmp_path / "c", limit=2))
        with pytest.raises(UserError) as info:
            aidsafe.run(path, inputs, out, options(tmp_path / "c", model_overrides={"default": "fake:other"}))
        message = str(info.value)
        assert "holds records made by other models" in message
        assert "default: fake -> other" in message  # the identities the call cache keys on
        assert "--force-restart" in message and "-o " in message
        assert len(read_jsonl(out)) == 2  # untouched
        summary = aidsafe.run(path, inputs, out, options(tmp_path / "c", model_overrides={"default": "fake:other"},
                                                          force_restart=True))
        assert summary.resumed == 0
        records = read_jsonl(out)
        assert len(records) == 4
        assert {r["provenance"]["models"]["default"]["model"] for r in records} == {"other"}
        # the same models resume as before
        assert aidsafe.run(path, inputs, out, options(tmp_path / "c", model_overrides={"default": "fake:other"})
                           ).resumed == 4
    finally:
        unregister_engine("other")


def test_a_resume_under_another_policy_text_is_refused(fake, recipe_file, prompts, tmp_path):
    text = MINI.replace("policies: aidsafe", "policies: {set: aidsafe, include: [physical_harm]}")
    inputs, out = prompts(["q one?"]), tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(text), inputs, out, options(tmp_path / "c"))
    wider = text.replace("include: [physical_harm]", "include: [physical_harm, fraud_deception]")
    # the recipe changed too (its hash), but resuming is refused for the policy text first
    with pytest.raises(UserError, match="records made under another policy text"):
        aidsafe.run(recipe_file(wider), inputs, out, options(tmp_path / "c"))


def test_compare_applies_a_model_override_to_the_recipes_that_have_it(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("", {"score": "4", "reason": "ok"})]
    base, judged = recipe_file(MINI, "base.yaml"), recipe_file(JUDGED, "judged.yaml")
    result = compare_recipes([base, judged], prompts(["q one?"]), judge_model="fake:test",
                             model_overrides={"default": "fake:test", "judge": "fake:test"},
                             out_dir=tmp_path / "o", cache_dir=tmp_path / "c")
    assert any("has no model 'judge'; --model judge=... does not apply to it" in w for w in result.warnings)
    with pytest.raises(UserError, match="--model names 'jduge', which no recipe declares; did you mean 'judge'"):
        compare_recipes([base, judged], prompts(["q one?"]), model_overrides={"jduge": "fake:test"},
                        out_dir=tmp_path / "o", cache_dir=tmp_path / "c")
