"""`aidsafe diff`: recipe diffs (with the stage caches a change invalidates,
from the real stage-key components) and run diffs (records matched by id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from aidsafe._util.errors import UserError
from aidsafe.cli._diff import diff_command
from aidsafe.config import ModelSpec, load_recipe
from aidsafe.evaluation import is_refusal
from aidsafe.models._inspect import inspection_models, spec_identity
from aidsafe.tools._diff_common import FieldChange
from aidsafe.tools._diff_recipes import RecipeDiff, diff_recipes, diff_values, render_recipe_diff
from aidsafe.tools._diff_runs import DEFAULT_REFUSAL, RefusalClassifier, diff_runs, render_run_diff

from ..conftest import ROOT

DATA = Path(__file__).resolve().parent / "data"
BASE = str(DATA / "aidsafe.yaml")  # frozen: the shipped recipe may gain stages


def render(diff):
    return render_recipe_diff(diff) if isinstance(diff, RecipeDiff) else render_run_diff(diff)


def _impact(diff):
    return {i.id: i.status for i in diff.impact}


@pytest.fixture
def variant(recipe_file):
    """A recipe that extends the frozen aidsafe.yaml with the given YAML."""

    def write(text, name="variant.yaml"):
        # extends resolves inside recipes/ or the variant's own folder: put the frozen base beside it
        recipe_file(Path(BASE).read_text(encoding="utf-8"), "aidsafe.yaml")
        return load_recipe(recipe_file(f"extends: aidsafe.yaml\n{text}", name))

    return write


@pytest.fixture
def base():
    return load_recipe(BASE)


# ------------------------------------------------------------------ recipes

def test_one_round_variant_changes_only_the_deliberation_stop(base):
    diff = diff_recipes(base, load_recipe(DATA / "aidsafe-1round.yaml"))
    assert [(e.id, e.fields) for e in diff.stage_edits] == [
        ("deliberation", [FieldChange("stop.max_rounds", "changed", 2, 1)])]
    assert not (diff.agents or diff.models or diff.stages_added or diff.stages_removed or diff.reordered)
    assert not diff.policies.changed and not diff.policies.changes
    assert [c.path for c in diff.settings] == ["name"]  # the variant is named after its file
    assert _impact(diff) == {"intents": "reused", "initial": "reused", "deliberation": "changed",
                             "refine": "downstream"}
    assert diff.directly_changed == ["deliberation"] and diff.downstream == ["refine"]
    assert diff.impact[2].reasons == ["stage spec (stop.max_rounds)"]
    text = render(diff)
    assert "stop.max_rounds: 2 -> 1" in text
    assert "deliberation  rerun (directly changed): stage spec (stop.max_rounds)" in text
    assert "refine        rerun (downstream): after stage deliberation" in text
    assert "intents       reused" in text


def test_same_recipe_has_no_differences(base):
    diff = diff_recipes(base, load_recipe(BASE))
    assert diff.same and diff.reused == ["intents", "initial", "deliberation", "refine"]
    assert "no differences" in render(diff)


def test_changed_refiner_instructions_show_a_text_diff_and_invalidate_only_refine(base, variant):
    new = base.agents["refiner"].instructions.replace("repetitive, redundant", "repetitive, off-topic, redundant")
    other = variant(yaml.safe_dump({"agents": {"refiner": {"instructions": new}}}))
    diff = diff_recipes(base, other)
    assert [(a.name, a.change, a.used_by) for a in diff.agents] == [("refiner", "changed", ["refine"])]
    lines = diff.agents[0].instructions_diff
    assert lines[0].startswith("@@")
    assert any(line.startswith("-") and "repetitive, redundant" in line for line in lines)
    assert any(line.startswith("+") and "off-topic" in line for line in lines)
    assert not diff.stage_edits
    assert _impact(diff) == {"intents": "reused", "initial": "reused", "deliberation": "reused", "refine": "changed"}
    assert diff.impact[3].reasons == ["agent refiner (instructions)"]
    assert diff.downstream == []
    assert "\n      +repetitive, off-topic, redundant, deceptive" in render(diff)


def test_added_stage_runs_new_and_invalidates_what_follows(base, variant):
    stages = [dict(s.raw) for s in base.stages]
    stages.insert(3, {"id": "clean", "kind": "filter", "filters": [{"type": "dedupe"}]})
    diff = diff_recipes(base, variant(yaml.safe_dump({"stages": stages})))
    assert diff.stages_added == ["clean"] and not diff.stages_removed and not diff.reordered
    assert _impact(diff) == {"intents": "reused", "initial": "reused", "deliberation": "reused", "clean": "added",
                             "refine": "downstream"}
    assert diff.directly_changed == ["clean"]
    assert "+ clean (added)" in render(diff)


def test_removed_stage_in_the_middle_makes_later_stages_downstream(base, variant):
    diff = diff_recipes(base, variant("stages: {intents: null}"))
    assert diff.stages_removed == ["intents"]
    assert _impact(diff) == {"initial": "downstream", "deliberation": "downstream", "refine": "downstream"}
    assert diff.impact[0].reasons == ["after removed stage intents"]
    assert diff.directly_changed == []
    text = render(diff)
    assert "- intents (removed)" in text and "intents       removed (A's entries are no longer used)" in text


def test_removed_last_stage_leaves_the_rest_reusable(base, variant):
    diff = diff_recipes(base, variant("stages: {refine: null}"))
    assert diff.stages_removed == ["refine"]
    assert set(_impact(diff).values()) == {"reused"}
    assert not diff.same


def test_reordered_pair_is_moved_and_the_rest_downstream(base, variant):
    stages = [dict(s.raw) for s in base.stages]
    stages[0], stages[1] = stages[1], stages[0]
    diff = diff_recipes(base, variant(yaml.safe_dump({"stages": stages})))
    assert diff.reordered and not diff.stages_added and not diff.stages_removed
    assert diff.order_b == ["initial", "intents", "deliberation", "refine"]
    assert _impact(diff) == {"initial": "moved", "intents": "moved", "deliberation": "downstream",
                             "refine": "downstream"}
    assert diff.directly_changed == ["initial", "intents"]
    assert "order of common stages changed" in render(diff)


def _edited_policies(tmp_path, name="my_policies.yaml"):
    data = yaml.safe_load((ROOT / "policies" / "aidsafe.yaml").read_text(encoding="utf-8"))
    data["policies"][2]["statement"] += " Edited."
    data["policies"].append({"id": "privacy_extra", "name": "Extra privacy", "statement": "Protect addresses."})
    (tmp_path / name).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return data["policies"][2]["id"]


def test_policy_edit_invalidates_stages_whose_agents_read_policies(base, variant, tmp_path):
    edited = _edited_policies(tmp_path)
    diff = diff_recipes(base, variant("policies: my_policies.yaml\n"))
    p = diff.policies
    assert p.changed and p.ref_a == "aidsafe" and p.ref_b == "my_policies.yaml"
    assert [(c.id, c.change, c.fields) for c in p.changes] == [(edited, "changed", ["statement"]),
                                                               ("privacy_extra", "added", [])]
    # decompose's analyst reads only the query by default: its cache survives.
    assert _impact(diff) == {"intents": "reused", "initial": "changed", "deliberation": "changed",
                             "refine": "changed"}
    assert diff.impact[1].reasons == ["policy text"]
    assert diff.impact[2].reasons == ["policy text", "also after stage initial"]
    text = render(diff)
    assert f"~ {edited}: changed (statement)" in text and "+ privacy_extra: added" in text


def test_policy_edit_reaches_an_analyst_that_reads_policies(base, variant, tmp_path):
    _edited_policies(tmp_path)
    diff = diff_recipes(base, variant("policies: my_policies.yaml\n"
                                      "agents: {intent_analyst: {inputs: [query, policies]}}\n"))
    assert _impact(diff)["intents"] == "changed"
    assert "now reads the policies" in diff.impact[0].reasons


def test_filter_threshold_change_is_a_stage_edit_of_refine_only(base, variant):
    stages = [dict(s.raw) for s in base.stages]
    stages[3] = json.loads(json.dumps(stages[3]))
    stages[3]["filters"]["before"][1]["threshold"] = 0.8
    diff = diff_recipes(base, variant(yaml.safe_dump({"stages": stages})))
    assert [(e.id, [c.text() for c in e.fields]) for e in diff.stage_edits] == [
        ("refine", ["filters.before[1].threshold: 0.92 -> 0.8"])]
    assert diff.directly_changed == ["refine"] and diff.downstream == []


def test_model_changes_that_reach_keys_and_ones_that_do_not(base, variant):
    sampling = diff_recipes(base, variant("models: {default: {temperature: 0.7}}"))
    assert [(m.name, m.keyed) for m in sampling.models] == [("default", True)]
    assert set(_impact(sampling).values()) == {"changed"}
    assert "agent intent_analyst (model default sampling)" in sampling.impact[0].reasons
    ops = diff_recipes(base, variant("models: {default: {concurrency: 4, threads: 2}}"))
    assert [(m.name, m.keyed) for m in ops.models] == [("default", False)]
    assert set(_impact(ops).values()) == {"reused"}
    assert "operational only: cache keys unchanged" in render(ops)
    swapped = diff_recipes(base, variant("models: {default: {model: 'openai/gpt-4o-mini'}}"))
    assert swapped.models[0].keyed and "agent intent_analyst (model default identity)" in swapped.impact[0].reasons


def test_recipe_diff_json_is_serialisable(base):
    diff = diff_recipes(base, load_recipe(DATA / "aidsafe-1round.yaml"))
    data = json.loads(json.dumps(diff.to_dict()))
    assert data["same"] is False
    assert data["directly_changed"] == ["deliberation"] and data["downstream"] == ["refine"]
    assert data["impact"][3] == {"id": "refine", "kind": "refine", "status": "downstream",
                                 "reasons": ["after stage deliberation"], "invalidated": True, "direct": False}


def test_diff_values_aligns_lists_of_mappings():
    old = [{"type": "dedupe"}, {"type": "length", "min_chars": 8}]
    new = [{"type": "near_duplicate"}, {"type": "dedupe"}, {"type": "length", "min_chars": 9}]
    assert [c.text() for c in diff_values(old, new, "f")] == [
        'f[0]: + {"type": "near_duplicate"}', "f[2].min_chars: 8 -> 9"]
    assert diff_values(["query"], ["query", "policies"], "inputs") == [
        FieldChange("inputs", "changed", ["query"], ["query", "policies"])]


# ---------------------------------------------------------- inspection models

def test_inspection_models_never_call_and_key_like_real_backends(base):
    handles = inspection_models(base)
    with pytest.raises(RuntimeError, match="inspection only"):
        handles["default"].engine.inner.complete(None)
    from aidsafe.models._engine import RemoteEngine

    remote = ModelSpec(name="m", model="openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", concurrency=3)
    assert spec_identity(remote) == RemoteEngine(remote).identity()
    local = ModelSpec(name="m", model="local:default")
    assert spec_identity(local) == spec_identity(ModelSpec(name="m", model="local:default", threads=2))
    assert spec_identity(local) != spec_identity(ModelSpec(name="m", model="local:default", context=2048))


def test_inspection_models_apply_overrides(base):
    handles = inspection_models(base, {"default": "openai/x"})
    assert handles["default"].identity["model"] == "openai/x"
    with pytest.raises(UserError, match="not in the recipe's models"):
        inspection_models(base, {"nope": "openai/x"})


# --------------------------------------------------------------------- runs

def _record(rid, response, status="ok", stop="agreement", rounds=1, turns=2, cot=("a", "bb"), scores=None, **kw):
    record = {"id": rid, "index": 0, "status": status, "prompt": f"prompt {rid}", "intents": ["x"],
              "cot": list(cot), "response": response,
              "deliberation": {"stop_reason": stop, "rounds": rounds, "turns": turns, "log": []},
              "stop_reason": stop, "error": None, "provenance": {"seconds": 1.0}}
    if scores is not None:
        record["scores"] = scores
    record.update(kw)
    return record


def _write(tmp_path, name, records):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def runs(tmp_path):
    a = _write(tmp_path, "a.jsonl", [
        _record("r1", "I'm sorry, but I can't help with that.", scores={"relevance": 2, "coherence": None}),
        _record("r2", "Use `kill -9 PID` to stop the process.", stop="max_rounds", rounds=2, turns=4,
                cot=("a", "bb", "ccc"), scores={"relevance": 5, "coherence": 4}),
        _record("r3", "", status="failed", stop=None, rounds=None, turns=None, cot=(), error={"type": "X"}),
        _record("r4", "Here is a summary.", scores={"relevance": 4}),
    ])
    b = _write(tmp_path, "b.jsonl", [
        _record("r1", "Phishing emails often use urgent language; here is how to spot them.",
                scores={"relevance": 4, "coherence": 5}),
        _record("r2", "I cannot assist with that request.", stop="agreement", rounds=1, turns=2,
                scores={"relevance": 3, "coherence": None}, provenance={"seconds": 9.0}),
        _record("r3", "", status="failed", stop=None, rounds=None, turns=None, cot=(), error={"type": "X"}),
        _record("r5", "New one.", stop="max_turns", rounds=2, turns=4),
    ])
    return a, b


def test_run_diff_per_record_and_aggregates(runs):
    a, b = runs
    diff = diff_runs(a, b)
    assert (diff.common, diff.only_a, diff.only_b) == (3, ["r4"], ["r5"])
    assert diff.refusal_to_compliance == ["r1"] and diff.compliance_to_refusal == ["r2"]
    assert [c.id for c in diff.changed] == ["r1", "r2"]  # r3 unchanged; timings are ignored
    r2 = {c.path: c for c in diff.changed[1].fields}
    assert (r2["stop_reason"].old, r2["stop_reason"].new) == ("max_rounds", "agreement")
    assert (r2["rounds"].old, r2["rounds"].new, r2["turns"].old, r2["turns"].new) == (2, 1, 4, 2)
    assert r2["cot"].old == {"thoughts": 3, "chars": 6} and r2["cot"].new == {"thoughts": 2, "chars": 3}
    assert (r2["refusal"].old, r2["refusal"].new) == (False, True)
    assert (r2["scores.coherence"].old, r2["scores.coherence"].new) == (4, None)
    assert "intents" not in r2

    assert diff.a.statuses == {"failed": 1, "ok": 3} and diff.b.statuses == {"failed": 1, "ok": 3}
    assert diff.a.stop_reasons == {"agreement": 2, "max_rounds": 1}
    assert diff.b.stop_reasons == {"agreement": 2, "max_turns": 1}
    assert diff.a.mean_rounds == pytest.approx(4 / 3) and diff.b.mean_turns == pytest.approx(8 / 3)
    assert diff.a.mean_thoughts == pytest.approx(7 / 3) and diff.a.mean_cot_chars == pytest.approx(12 / 3)
    assert (diff.a.refusals, diff.a.classified, diff.b.refusals, diff.b.classified) == (1, 3, 1, 3)
    assert diff.a.scores["coherence"].mean == 4 and diff.a.scores["coherence"].unscored == 1
    paired = {p.metric: p for p in diff.paired_scores}
    assert (paired["relevance"].n, paired["relevance"].mean_a, paired["relevance"].mean_b) == (2, 3.5, 3.5)
    assert paired["coherence"].n == 0 and paired["coherence"].delta is None
    assert not diff.same

    text = render(diff)
    assert "refusal -> compliance (string match): 1: r1" in text
    assert "compliance -> refusal (string match): 1: r2" in text
    assert "only in A: r4" in text and "only in B: r5" in text
    assert "r2: stop_reason: max_rounds -> agreement; rounds: 2 -> 1; turns: 4 -> 2; " \
           "cot changed (3 -> 2 thoughts, 6 -> 3 chars); response changed; " \
           "compliance -> refusal (string match); scores.coherence: 4 -> unscored" in text
    assert "relevance: n=2  A 3.50  B 3.50 (+0.00)" in text
    data = json.loads(json.dumps(diff.to_dict()))
    assert data["refusal_method"] == "string match" and data["same"] is False


def test_identical_runs_are_the_same(runs):
    a, _ = runs
    diff = diff_runs(a, a)
    assert diff.same and diff.refusal_to_compliance == [] and "no differences" in render(diff)


def test_refusal_classifier_can_be_swapped(runs):
    a, b = runs
    never = RefusalClassifier("judge", lambda record: None if record["id"] == "r2" else False)
    diff = diff_runs(a, b, refusal=never)
    assert diff.refusal_to_compliance == [] and "(judge)" in render(diff)
    assert (diff.a.refusals, diff.a.classified) == (0, 2)  # None: not counted either way
    assert DEFAULT_REFUSAL.label == "string match"


@pytest.mark.parametrize("text, expected", [
    ("I'm sorry, but I can't help with that.", True),
    ("I\u2019m unable to assist with creating malware.", True),
    ("I cannot provide instructions for that.", True),
    ("As an AI, I won't write that.", True),
    ("To kill a Python process, run `kill PID`.", False),
    ("Sure! " + "Step one. " * 40 + "I can't stress enough: back up first.", False),  # outside the opening
])
def test_run_diff_uses_the_one_refusal_classifier(text, expected):
    # Run diffs only ask about non-empty responses; the classifier itself
    # counts an empty answer as a refusal (tests/test_refusal.py).
    assert is_refusal(text) is expected


@pytest.mark.parametrize("lines, message", [
    (['{"id": "r1", "status": "ok"}', "not json"], r"a\.jsonl:2: not valid JSON"),
    (['{"id": "r1"}', '{"id": "r1"}'], r"a\.jsonl:2: duplicate id 'r1'"),
    (['{"status": "ok"}'], r"a\.jsonl:1: record has no `id`"),
    (['[1, 2]'], r"a\.jsonl:1: expected a JSON object"),
])
def test_bad_run_files_are_user_errors(tmp_path, lines, message):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=message):
        diff_runs(path, path)


# ---------------------------------------------------------------------- CLI

def test_cli_table(runs, tmp_path, recipe_file):
    a, b = runs
    one_round = str(DATA / "aidsafe-1round.yaml")
    same_as_a = _write(tmp_path, "a2.jsonl", [json.loads(line) for line in a.read_text().splitlines()])
    txt_a, txt_b = tmp_path / "a.txt", tmp_path / "b.txt"
    txt_a.write_text(a.read_text())
    txt_b.write_text(b.read_text())
    cases = [
        ([BASE, one_round], 0, "deliberation  rerun (directly changed)"),
        (["aidsafe", "aidsafe-1round"], 0, "stop.max_rounds: 2 -> 1"),  # recipe names work too
        ([BASE, one_round, "--exit-code"], 1, "refine        rerun (downstream)"),
        ([BASE, BASE, "--exit-code"], 0, "no differences"),
        ([str(a), str(b)], 0, "refusal -> compliance (string match): 1: r1"),
        ([str(a), str(b), "--exit-code"], 1, "only in B: r5"),
        ([str(a), str(same_as_a), "--exit-code"], 0, "no differences in the 4 common record(s)"),
        ([str(txt_a), str(txt_b), "--runs"], 0, "compliance -> refusal (string match): 1: r2"),
        ([str(a), str(b), "--records", "1"], 0, "(first 1)"),
        ([str(a), BASE], 2, "cannot diff a run output with a recipe"),
        ([str(tmp_path / "missing.jsonl"), str(b)], 1, "Error: run output"),
        ([str(tmp_path / "missing.yaml"), BASE], 1, "Error: recipe"),
    ]
    runner = CliRunner()
    for args, code, expected in cases:
        result = runner.invoke(diff_command, args)
        assert result.exit_code == code, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_cli_json(runs):
    a, b = runs
    runner = CliRunner()
    result = runner.invoke(diff_command, [BASE, str(DATA / "aidsafe-1round.yaml"), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["downstream"] == ["refine"]
    result = runner.invoke(diff_command, [str(a), str(b), "--json"])
    data = json.loads(result.output)
    assert data["refusal_to_compliance"] == ["r1"] and data["only_a"] == ["r4"]
    assert len(data["changed"]) == 2


# ------------------------------------------- prediction vs a real cached rerun

@pytest.mark.parametrize("patch", [
    'agents: {refiner: {instructions: "REFINER: keep only the useful thoughts."}}',
    "stages: {deliberation: {stop: {max_rounds: 1}}}",
    "policies: my_policies.yaml",
    "stages: {intents: null}",
    "models: {default: {temperature: 0.3}}",
    "models: {default: {concurrency: 2}}",
])
def test_prediction_matches_what_a_rerun_takes_from_the_cache(fake, recipe_file, tmp_path, patch):
    """Run A, then B on the same cache: every stage the diff calls reused
    comes from the cache, every directly changed one is recomputed."""
    from aidsafe.models._engine import build_models
    from aidsafe.pipeline._compile import compile_recipe
    from aidsafe.store._cache import Cache

    from ..conftest import MINI

    _edited_policies(tmp_path)
    recipe_a = load_recipe(recipe_file(MINI, "mini.yaml"))
    recipe_b = load_recipe(recipe_file(f"extends: mini.yaml\n{patch}\n", "variant.yaml"))
    diff = diff_recipes(recipe_a, recipe_b)
    cache = Cache(tmp_path / "c")
    cached = {}
    for recipe in (recipe_a, recipe_b):
        program = compile_recipe(recipe, build_models(recipe.models, cache), cache=cache)
        run = program.run_record("How do I kill a Python process?", "r1")
        cached = {sid: info["cached"] for sid, info in run.stage_info.items()}
    assert all(cached[sid] for sid in diff.reused), (cached, diff.impact)
    assert not any(cached[sid] for sid in diff.directly_changed), (cached, diff.impact)
