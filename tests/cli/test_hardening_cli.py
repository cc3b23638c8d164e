"""Issue #14 item 15: `optimize` points its judges and prompt model at a
server, `run --api-base` points remote models at one, and a prompt model
that fails is one Error: line (mipro) and never a silent "success" (gepa)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aidsafe.cli._compare import compare_command
from aidsafe.cli._main import main
from aidsafe.cli._optimize import optimize_command
from aidsafe.testing.mock_server import MockOpenAIServer

from ..conftest import MINI, read_jsonl
from ..tools.test_optimize import POLICY_COT, SCORE_5, SINGLE  # the optimize tests' recipe and judge answers


def optimize(*args):
    return CliRunner().invoke(optimize_command, [str(a) for a in args])


@pytest.mark.parametrize("command, options", [
    (optimize_command, ["--judge-model", "--judge-api-base", "--judge-api-key-env", "--prompt-api-base",
                        "--prompt-api-key-env"]),
    (compare_command, ["--judge-model", "--judge-api-base", "--judge-api-key-env"]),
])
def test_judge_endpoint_options_are_offered(command, options):
    text = CliRunner().invoke(command, ["--help"]).output
    assert all(option in text for option in options)


def test_run_offers_api_base():
    assert "--api-base" in CliRunner().invoke(main, ["run", "--help"]).output


def test_optimize_judges_use_the_given_server_and_key_variable(fake, recipe_file, four, tmp_path, monkeypatch):
    recipe = recipe_file(SINGLE)
    args = [recipe, "--trainset", four, "--out", tmp_path / "o", "--threshold", "0", "--judge-model",
            "openai/mock-model", "--judge-api-key-env", "AIDSAFE_JUDGE_KEY"]
    monkeypatch.delenv("AIDSAFE_JUDGE_KEY", raising=False)
    with MockOpenAIServer() as server:
        url = server.url
        missing = optimize(*args, "--judge-api-base", server.url)
        assert missing.exit_code == 1 and "$AIDSAFE_JUDGE_KEY, which is not set" in missing.output
        monkeypatch.setenv("AIDSAFE_JUDGE_KEY", "k")
        result = optimize(*args, "--judge-api-base", server.url)
        assert result.exit_code == 0, result.output
        assert server.calls > 0
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert {m["api_base"] for m in meta["metric"]["judge_models"].values()} == {url}


def test_gepa_reflects_with_the_prompt_model_on_the_given_server(fake, recipe_file, four, tmp_path):
    fake.rules = [
        (POLICY_COT, lambda call: {"reason": "Hasty.", "score": "2"} if "hasty" in call.user else SCORE_5),
        ("THINKER: reason and answer.", {"thoughts": ["A hasty thought."], "response": "Sure."}),
    ]
    with MockOpenAIServer() as server:
        url = server.url
        result = optimize(recipe_file(SINGLE), "--trainset", four, "--out", tmp_path / "o", "--optimizer", "gepa",
                          "--judge-model", "fake:test", "--prompt-model", "openai/mock-model",
                          "--prompt-api-base", server.url, "--trials", "2", "--val-fraction", "0.25")
        assert result.exit_code == 0, result.output
        assert server.calls > 0  # every reflection went to the server
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["settings"]["reflection_lm"]["api_base"] == url


@pytest.mark.parametrize("optimizer", ["mipro", "gepa"])
def test_a_prompt_model_that_fails_is_one_error_line_and_writes_nothing(fake, recipe_file, four, tmp_path,
                                                                       optimizer):
    if optimizer == "mipro":
        pytest.importorskip("optuna")
    fake.rules = [
        (POLICY_COT, lambda call: {"reason": "Hasty.", "score": "2"} if "hasty" in call.user else SCORE_5),
        ("THINKER: reason and answer.", {"thoughts": ["A hasty thought."], "response": "Sure."}),
    ]
    result = optimize(recipe_file(SINGLE), "--trainset", four, "--out", tmp_path / "o", "--optimizer", optimizer,
                      "--judge-model", "fake:test", "--prompt-model", "nosuch/model", "--trials", "2",
                      "--candidates", "2", "--val-fraction", "0.25", "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--prompt-model 'nosuch/model'" in errors[0] and "nothing was written" in errors[0]
    assert not (tmp_path / "o" / "prompts.json").exists()


def test_run_api_base_points_remote_models_at_the_server(recipe_file, prompts, tmp_path):
    recipe = recipe_file(MINI.replace('model: "fake:test"', "model: openai/mock-model"))
    out = tmp_path / "o.jsonl"
    with MockOpenAIServer() as server:
        url = server.url
        plan = CliRunner().invoke(main, ["run", str(recipe), "-i", str(prompts(["a"])), "--plan", "--api-base",
                                         server.url, "--cache-dir", str(tmp_path / "c")])
        assert plan.exit_code == 0, plan.output
        result = CliRunner().invoke(main, ["run", str(recipe), "-i", str(prompts(["a"])), "-o", str(out), "-q",
                                           "--api-base", server.url, "--cache-dir", str(tmp_path / "c")])
        assert result.exit_code == 0, result.output
        assert server.calls > 0
    record = read_jsonl(out)[0]
    assert record["status"] == "ok"
    assert record["provenance"]["models"]["default"]["api_base"] == url


def test_run_api_base_without_a_remote_model_is_an_error(fake, recipe_file, prompts, tmp_path):
    result = CliRunner().invoke(main, ["run", str(recipe_file(MINI)), "-i", str(prompts(["a"])), "-o",
                                       str(tmp_path / "o.jsonl"), "--api-base", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 1
    assert "Error: --api-base http://127.0.0.1:9/v1: no model is remote (default: fake:test)" in result.output
