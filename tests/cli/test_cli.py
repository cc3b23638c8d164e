"""The `aidsafe` command, through click's CliRunner on the real group."""

from __future__ import annotations

import json

import pytest

from ..conftest import MINI, ROOT


@pytest.mark.parametrize("args, code, out", [
    (["validate", "recipes/aidsafe.yaml", "recipes/baseline.yaml", "recipes/aidsafe-1round.yaml"], 0, "ok (6 stages"),
    (["validate", "recipes/judges.yaml", "recipes/aidsafe-dpo.yaml"], 0, "ok (judges file"),
    (["validate", "tests/invalid_recipes/bad_references.yaml"], 1, "unknown agent 'critc'; did you mean 'critic'?"),
    (["validate", "nope.yaml"], 1, "not found"),
    (["validate"], 2, "Missing argument"),
    (["show", "recipes/aidsafe-1round.yaml"], 0, "rounds<=1"),
    (["show", "aidsafe"], 0, "[deliberation] deliberate (safety_deliberator@default, helpfulness_deliberator@default)"),
    (["show", "recipes/critique-revise.yaml"], 0, "writes: thoughts, response  when: severity >= 2"),
    (["run", "recipes/aidsafe.yaml", "--input", "missing.jsonl", "-o", "x.jsonl"], 1, "not found"),
    (["run", "recipes/aidsafe.yaml", "--input", "tests/data/xstest_sample.csv"], 2, "--output is required"),
    (["run", "recipes/aidsafe.yaml", "-i", "tests/data/xstest_sample.csv", "-o", "x.jsonl", "--model", "oops"], 2,
     "expected NAME=MODEL"),
    (["cache", "clear", "--older-than", "soon", "--yes"], 2, "expected a duration"),
    (["--version"], 0, "aidsafe, version"),
])
def test_cli_table(cli, monkeypatch, args, code, out):
    monkeypatch.chdir(ROOT)
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert out in result.output
    if code == 1:
        assert "Traceback" not in result.output and "Error" in result.output


def test_run_plan_stats_explain_and_clear(cli, fake, tmp_path, monkeypatch, recipe_file):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe = recipe_file(MINI)
    data = ROOT / "tests" / "data" / "xstest_sample.csv"
    cache = tmp_path / "cache"
    out = tmp_path / "out.jsonl"

    result = cli("run", recipe, "-i", data, "--plan", "--cache-dir", cache)
    assert result.exit_code == 0 and "intents" in result.output and "to run     3" in result.output
    assert fake.calls == 0

    result = cli("run", recipe, "-i", data, "-o", out, "-q", "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert "3 ok" in result.output and "model default: 15 call(s)" in result.output
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["ok"] * 3

    result = cli("run", recipe, "-i", data, "--plan", "--cache-dir", cache)
    assert "reused     3   to run     0" in result.output

    result = cli("cache", "stats", "--cache-dir", cache)
    assert result.exit_code == 0 and "stages" in result.output and "last run (mini, 3 records" in result.output

    result = cli("cache", "explain", "1", "--recipe", recipe, "-i", data, "--cache-dir", cache)
    assert result.output.count("cache hit") == 4

    result = cli("cache", "clear", "--stage", "refine", "--yes", "--cache-dir", cache)
    assert "removed 6 entries" in result.output
    result = cli("cache", "clear", "--yes", "--cache-dir", cache)
    assert result.exit_code == 0 and "removed" in result.output


def test_help_lists_every_command(cli):
    result = cli("--help")
    for command in ("validate", "run", "show", "cache", "serve", "diff", "eval", "bench", "export"):
        assert command in result.output
