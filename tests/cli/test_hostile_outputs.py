"""Issue 29, items 3 and 11: every command that writes refuses an output that
resolves to a file it reads (input, recipe and its parents, policies,
prompts, judges), locks on the resolved path (a link to the output shares
its lock and stays a link), and an output path the file system refuses is
one `Error:` line naming it, never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from aidsafe._util.lock import exclusive_lock
from aidsafe._util.paths import policies_dir

from ..conftest import MINI, read_jsonl


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def test_export_refuses_to_overwrite_its_input(cli, tmp_path):
    run = tmp_path / "run.jsonl"
    run.write_text(json.dumps({"id": "a", "status": "ok", "prompt": "p", "response": "r", "cot": []}) + "\n")
    before = run.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(run)
    for out in (run, tmp_path / "link.jsonl", tmp_path / "." / "run.jsonl"):
        result = cli("export", "-i", run, "--format", "sft", out)
        assert result.exit_code == 2, result.output
        assert "same file as" in result.output and "Traceback" not in result.output
    assert run.read_bytes() == before


def test_export_hf_refuses_a_folder_that_holds_its_input(cli, tmp_path):
    pytest.importorskip("datasets")
    run = tmp_path / "ds" / "run.jsonl"
    run.parent.mkdir()
    run.write_text(json.dumps({"id": "a", "status": "ok", "prompt": "p", "response": "r", "cot": []}) + "\n")
    result = cli("export", "-i", run, "--format", "hf", tmp_path / "ds")
    assert result.exit_code == 2 and "is a folder that holds" in result.output
    assert run.is_file()


def _recipe_with_its_own_files(tmp_path):
    """A variant that extends a parent, with a policy file and a prompts folder beside it."""
    shutil.copy(policies_dir() / "aidsafe.yaml", tmp_path / "rules.yaml")
    (tmp_path / "tuned").mkdir()
    (tmp_path / "tuned" / "prompts.json").write_text(json.dumps({"agents": {}}), encoding="utf-8")
    (tmp_path / "parent.yaml").write_text(MINI.replace("policies: aidsafe", "policies: rules.yaml"),
                                          encoding="utf-8")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\nname: child\nprompts: tuned\n", encoding="utf-8")
    return child


@pytest.mark.parametrize("target", ["rules.yaml", "parent.yaml", "child.yaml", "tuned/prompts.json"])
def test_run_refuses_an_output_that_is_any_file_of_the_recipe(cli, fake, prompts, tmp_path, target):
    recipe = _recipe_with_its_own_files(tmp_path)
    before = (tmp_path / target).read_bytes()
    result = cli("run", recipe, "-i", prompts(["one"]), "-o", tmp_path / target, "-q")
    assert result.exit_code == 2, result.output
    assert len(error_lines(result.output)) == 1 and "which this command reads" in result.output
    assert (tmp_path / target).read_bytes() == before and fake.calls == 0


def test_a_link_to_the_output_shares_its_lock_and_stays_a_link(cli, fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    out = tmp_path / "out.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(out)
    recipe, inputs = recipe_file(MINI), prompts(["one"])
    with exclusive_lock(tmp_path / "out.jsonl.lock"):  # a run writing out.jsonl
        result = cli("run", recipe, "-i", inputs, "-o", link, "-q")
        assert result.exit_code == 1 and "is being written by another run" in result.output
    assert not out.exists()
    result = cli("run", recipe, "-i", inputs, "-o", link, "-q")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and [r["status"] for r in read_jsonl(out)] == ["ok"]


def test_eval_and_bench_refuse_reports_over_what_they_read(cli, tmp_path):
    run = tmp_path / "run.jsonl"
    run.write_text(json.dumps({"id": "a", "status": "ok", "prompt": "p", "response": "r", "cot": []}) + "\n")
    before = run.read_bytes()
    for args in (["eval", run, "--json", run], ["eval", run, "--report", run],
                 ["bench", "local:smoke", "--output", tmp_path / "judges.yaml", "--judges", tmp_path / "judges.yaml"]):
        shutil.copy(policies_dir().parent / "recipes" / "judges.yaml", tmp_path / "judges.yaml")
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "which this command reads" in result.output
    assert run.read_bytes() == before


@pytest.mark.parametrize("where", ["/proc/o.jsonl", "long"])
def test_an_output_path_the_file_system_refuses_is_one_error_line(cli, fake, recipe_file, prompts, tmp_path, where):
    out = tmp_path / ("x" * 300 + ".jsonl") if where == "long" else where
    result = cli("run", recipe_file(MINI), "-i", prompts(["one"]), "-o", out, "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(error_lines(result.output)) == 1 and str(out) in error_lines(result.output)[0]
