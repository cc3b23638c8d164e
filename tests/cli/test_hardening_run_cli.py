"""Issue 14 at the command line: exit codes and one `Error:` line for an
output that is the input, an output under a file, a run where every record
failed, an export that writes no rows, and a malformed --model."""

from __future__ import annotations

import json

import pytest

from ..conftest import MINI


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def test_output_equal_to_input_is_misuse_and_the_input_is_untouched(cli, fake, recipe_file, prompts, tmp_path):
    inputs = prompts(["one", "two"])
    before = inputs.read_bytes()
    (tmp_path / "alias.jsonl").symlink_to(inputs)
    for output in (inputs, tmp_path / "alias.jsonl"):
        result = cli("run", recipe_file(MINI), "-i", inputs, "-o", output, "-q")
        assert result.exit_code == 2, result.output
        assert len(error_lines(result.output)) == 1 and "same file as" in result.output
        assert "Traceback" not in result.output
    assert inputs.read_bytes() == before and fake.calls == 0


def test_output_under_a_file_is_one_error_line(cli, fake, recipe_file, prompts, tmp_path):
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    result = cli("run", recipe_file(MINI), "-i", prompts(["one"]), "-o", tmp_path / "notes.txt" / "out.jsonl", "-q")
    assert result.exit_code == 1, result.output
    assert error_lines(result.output) == [f"Error: cannot write {tmp_path / 'notes.txt' / 'out.jsonl'}: "
                                          f"{tmp_path / 'notes.txt'} is a file, not a folder; "
                                          "choose a path in a folder"]


@pytest.mark.parametrize("fmt", ["sft", "records"])
def test_export_under_a_file_is_one_error_line(cli, tmp_path, fmt):
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"id": "r1", "status": "ok", "prompt": "p", "cot": ["a"], "response": "r",
                                   "error": None}) + "\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    result = cli("export", tmp_path / "notes.txt" / "deeper" / "out.jsonl", "-i", records, "--format", fmt)
    assert result.exit_code == 1, result.output
    assert error_lines(result.output) == [f"Error: cannot write {tmp_path / 'notes.txt' / 'deeper' / 'out.jsonl'}: "
                                          f"{tmp_path / 'notes.txt'} is a file, not a folder; "
                                          "choose a path in a folder"]


def test_a_run_where_every_record_failed_exits_1(cli, fake, recipe_file, prompts, tmp_path):
    fake.rules = [("ANALYST", "garbage")]  # unparseable: every record fails
    out = tmp_path / "out.jsonl"
    result = cli("run", recipe_file(MINI), "-i", prompts(["one", "two"]), "-o", out, "-q")
    assert result.exit_code == 1, result.output
    assert error_lines(result.output)[0].startswith("Error: every record failed (2 of 2)")
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["failed", "failed"]


def test_a_run_with_some_failures_exits_0(cli, fake, recipe_file, prompts, tmp_path):
    fake.rules = [("ANALYST", lambda call: "garbage" if "bad" in call.user else {"intents": ["x"]}),
                  ("CRITIC_", {"agree": True})]
    result = cli("run", recipe_file(MINI), "-i", prompts(["fine", "bad one"]), "-o", tmp_path / "o.jsonl", "-q")
    assert result.exit_code == 0, result.output
    assert "1 failed, 1 ok" in result.output


def test_export_of_no_rows_exits_1_and_writes_no_file(cli, tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"id": "r1", "status": "failed", "prompt": "p", "cot": [], "response": "",
                                   "error": {"type": "X", "message": "m"}}) + "\n", encoding="utf-8")
    out = tmp_path / "sft.jsonl"
    result = cli("export", out, "-i", records, "--format", "sft")
    assert result.exit_code == 1, result.output
    assert len(error_lines(result.output)) == 1 and "no rows to export" in result.output
    assert not out.exists()
    out.write_text("an earlier export\n", encoding="utf-8")
    assert cli("export", out, "-i", records, "--format", "sft").exit_code == 1
    assert out.read_text(encoding="utf-8") == "an earlier export\n"  # not replaced by nothing


@pytest.mark.parametrize("value", ["foo", "noequals"])
def test_malformed_model_override_is_misuse(cli, fake, recipe_file, prompts, tmp_path, value):
    result = cli("run", recipe_file(MINI), "-i", prompts(["one"]), "-o", tmp_path / "o.jsonl", "--model", value)
    assert result.exit_code == 2, result.output
    assert "expected NAME=MODEL" in result.output and len(error_lines(result.output)) == 1
