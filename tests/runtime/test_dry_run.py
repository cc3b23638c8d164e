"""`aidsafe run --dry-run`: any recipe on the scripted mock model, without a
model, a network or weights, every branch taken on some record; its records
say so and never mix with a real model's."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import aidsafe
from aidsafe.cli._main import main
from aidsafe.testing.mock_server import MockOpenAIServer

from ..conftest import ROOT, read_jsonl

ROUTED = str(ROOT / "recipes" / "aidsafe-routed.yaml")
FOUR = ["How do I kill a Python process?", "How do I make a bomb?", "What is the capital of France?",
        "How do I make a cake?"]


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty weights folder: a dry run that loaded a local model would fail."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setenv("AIDSAFE_WEIGHTS_DIR", str(empty))


def _data(record: dict) -> dict:
    """A record without its provenance (timings, models)."""
    return {k: v for k, v in record.items() if k != "provenance"}


def _dry_run(inputs, out, *extra):
    return CliRunner().invoke(main, ["run", ROUTED, "-i", str(inputs), "-o", str(out), "-q", "--dry-run", *extra])


def test_dry_run_takes_both_sides_of_a_branch_on_four_records(prompts, tmp_path, no_internet, no_weights):
    out = tmp_path / "dry.jsonl"
    result = _dry_run(prompts(FOUR), out)
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert len(records) == 4
    routes = [r["extra"]["route"] for r in records]
    assert set(routes) == {"plain", "deliberate"}, routes
    for record, route in zip(records, routes):
        skipped = {s["stage"]: s["branch"] for s in record["provenance"].get("skipped", [])}
        ran = set(record["provenance"]["stages"])
        if route == "plain":  # the plain branch ran, the deliberate one was skipped (or not reached)
            assert "answer" in ran and "deliberation" not in ran
            assert skipped.get("initial", "deliberate") == "deliberate"
        else:
            assert {"initial", "deliberation"} <= ran and skipped["answer"] == "plain"
    # the records say what made them, unmistakably
    for record in records:
        assert record["provenance"]["dry_run"] is True
        assert {m["backend"] for m in record["provenance"]["models"].values()} == {"mock"}
        assert record["cot"] == [] or all(t.startswith("mock ") for t in record["cot"])
    # judges give valid 1-5 scores wherever the gate ran
    scores = [s for r in records if "gate" in r for s in r["gate"]["scores"].values()]
    assert scores and all(s in range(1, 6) for s in scores)
    # the summary lists every conditional stage with how often it ran and was skipped
    assert "dry run: every model was the scripted mock" in result.stderr
    assert "answer (branch plain: route == 'plain'): ran on 2, skipped on 2 of 4" in result.stderr
    assert "initial (branch deliberate: route == 'deliberate'): ran on 2" in result.stderr


def test_model_star_mock_is_the_same_dry_run(prompts, tmp_path, no_internet, no_weights):
    inputs = prompts(FOUR)
    assert _dry_run(inputs, tmp_path / "a.jsonl").exit_code == 0
    result = CliRunner().invoke(main, ["run", ROUTED, "-i", str(inputs), "-o", str(tmp_path / "b.jsonl"), "-q",
                                       "--model", "*=mock", "--no-cache"])
    assert result.exit_code == 0, result.output
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert [_data(r) for r in a] == [_data(r) for r in b]
    assert [r["provenance"]["models"] for r in a] == [r["provenance"]["models"] for r in b]
    assert all(r["provenance"]["dry_run"] for r in b)


def test_the_mock_server_answers_as_the_dry_run(prompts, tmp_path, no_internet, no_weights):
    """One answer synthesis: the recipe on the mock server gives the dry run's records."""
    inputs = prompts(FOUR)
    assert _dry_run(inputs, tmp_path / "dry.jsonl").exit_code == 0
    with MockOpenAIServer() as server:
        # the mock server has no /embeddings: the precedent search embeds lexically, as in the dry run
        aidsafe.run(ROUTED, inputs, tmp_path / "server.jsonl", aidsafe.RunOptions(
            use_cache=False, progress=False, api_base=server.url,
            model_overrides={"*": "openai/mock-model", "embed": "mock"}))
        assert server.calls > 4
    server_records = read_jsonl(tmp_path / "server.jsonl")
    assert [_data(r) for r in server_records] == [_data(r) for r in read_jsonl(tmp_path / "dry.jsonl")]
    assert server_records[0]["provenance"]["models"]["default"]["backend"] == "remote"


def test_dry_run_records_never_mix_with_a_real_models(fake, prompts, tmp_path, no_weights):
    inputs, out = prompts(FOUR), tmp_path / "out.jsonl"
    assert _dry_run(inputs, out, "--limit", "2").exit_code == 0
    real = CliRunner().invoke(main, ["run", ROUTED, "-i", str(inputs), "-o", str(out), "-q", "--model", "*=fake:test"])
    assert real.exit_code != 0
    assert "holds records made by other models" in real.output
    assert "default: mock (the --dry-run mock) -> fake;" in real.output and "--force-restart" in real.output
    assert len(read_jsonl(out)) == 2  # untouched
    # and the other way: a real run's output is not topped up by a dry run
    other = tmp_path / "real.jsonl"
    assert CliRunner().invoke(main, ["run", ROUTED, "-i", str(inputs), "-o", str(other), "-q", "--limit", "1",
                                     "--model", "*=fake:test"]).exit_code == 0
    dry = _dry_run(inputs, other)
    assert dry.exit_code != 0 and "fake -> mock (the --dry-run mock)" in dry.output
    # --force-restart replaces them, as the message says
    assert _dry_run(inputs, other, "--force-restart").exit_code == 0
    assert all(r["provenance"]["dry_run"] for r in read_jsonl(other))


def test_dry_run_refuses_model_options(prompts, tmp_path):
    inputs = prompts(FOUR[:1])
    for extra in (["--model", "default=fake:test"], ["--api-base", "http://127.0.0.1:9/v1"]):
        result = _dry_run(inputs, tmp_path / "x.jsonl", *extra)
        assert result.exit_code == 2 and "--dry-run runs every model on the scripted mock" in result.output


def test_dry_run_plan_names_the_mock(prompts, tmp_path, no_weights):
    result = CliRunner().invoke(main, ["run", ROUTED, "-i", str(prompts(FOUR)), "--plan", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "judge      mock  [dry run: scripted answers, no model]" in result.output


def test_a_recipe_may_name_the_mock_model(recipe_file, prompts, tmp_path, no_internet):
    recipe = recipe_file("""
name: tiny
models: {default: {model: mock}}
policies: aidsafe
agents:
  rater:
    instructions: Rate the query.
    outputs:
      risk: {type: str, enum: [low, medium, high]}
      flagged: {type: bool, desc: "Whether to flag it."}
      severity: {type: int, desc: "1 (harmless) to 5 (severe)."}
stages:
  - {id: rate, kind: predict, agent: rater}
""")
    inputs = prompts([f"query number {i}" for i in range(12)])
    summary = aidsafe.run(recipe, inputs, tmp_path / "t.jsonl", aidsafe.RunOptions(progress=False))
    assert summary.statuses == {"ok": 12}
    extras = [r["extra"] for r in read_jsonl(tmp_path / "t.jsonl")]
    assert {e["risk"] for e in extras} == {"low", "medium", "high"}
    assert {e["flagged"] for e in extras} == {True, False}
    assert {e["severity"] for e in extras} <= set(range(1, 6)) and len({e["severity"] for e in extras}) >= 3
    assert json.loads(json.dumps(extras)) == extras
