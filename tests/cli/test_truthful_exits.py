"""Issue 29, item 8: exit codes and summaries tell the truth. `eval` with
every judge call failing exits 1; an empty input is an `Error:` naming the
file (and writes nothing); the summary after Ctrl-C gives the counts."""

from __future__ import annotations

import json

import aidsafe
from aidsafe.runtime._run import RunSummary
from aidsafe.testing.mock_server import MockOpenAIServer

from ..conftest import MINI, options


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def test_eval_with_every_judge_call_failing_exits_1(cli, tmp_path):
    run = tmp_path / "run.jsonl"
    run.write_text("".join(json.dumps({"id": f"r{i}", "status": "ok", "prompt": "p", "response": "r", "cot": ["c"]})
                           + "\n" for i in range(3)))
    with MockOpenAIServer(fail_rate=1.0, fail_statuses=(400,)) as server:
        result = cli("eval", run, "--judge-model", "openai/mock-model", "--judge-api-base", server.url, "-q",
                     "--metric", "relevance", "--no-cache")
    assert result.exit_code == 1, result.output
    assert error_lines(result.output) and "nothing was scored: 3 judge call(s) failed" in error_lines(result.output)[0]


def test_an_empty_input_is_an_error_naming_the_file(cli, fake, recipe_file, tmp_path):
    for name, text in (("empty.jsonl", ""), ("blank.jsonl", "\n\n"), ("header.csv", "id,prompt\n")):
        source = tmp_path / name
        source.write_text(text, encoding="utf-8")
        out = tmp_path / f"{name}.out.jsonl"
        result = cli("run", recipe_file(MINI), "-i", source, "-o", out, "-q")
        assert result.exit_code == 1, result.output
        assert error_lines(result.output) == [f"Error: input {source} has no rows: nothing to run; give a file "
                                              "with one prompt per line (JSONL), row (CSV) or item (JSON array)"]
        assert not out.exists()


def test_the_summary_after_ctrl_c_gives_the_counts(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    seen = []

    def interrupt(record):
        seen.append(record)
        if len(seen) == 2:
            raise KeyboardInterrupt

    summary = aidsafe.run(recipe_file(MINI), prompts([f"prompt {i}" for i in range(9)]), tmp_path / "out.jsonl",
                          options(tmp_path / "c", workers=1), on_record=interrupt)
    assert summary.interrupted
    first = summary.lines()[0]
    assert f"{summary.total} record(s) -> " in first and "2 ok" in first
    if summary.total > 2:
        assert f"{summary.total - 2} not finished" in first


def test_a_summary_with_nothing_finished_still_counts():
    summary = RunSummary(output="out.jsonl", total=9, interrupted=True)
    assert summary.lines()[0] == "9 record(s) -> out.jsonl in 0.0s: 9 not finished"


# ----------------------------------------------------- item 9: no silent fallbacks

def test_an_id_field_that_is_not_a_column_is_an_error_with_a_suggestion(cli, fake, recipe_file, prompts, tmp_path):
    inputs = prompts([{"uid": "a", "prompt": "one"}, {"uid": "b", "prompt": "two"}])
    out = tmp_path / "out.jsonl"
    for args in (["-o", out, "--id-field", "uidd"], ["--plan", "--id-field", "uidd"]):
        result = cli("run", recipe_file(MINI), "-i", inputs, *args, "-q")
        assert result.exit_code == 1, result.output
        assert error_lines(result.output) == [
            f"Error: --id-field 'uidd': no such column in {inputs} (columns: uid, prompt); did you mean 'uid'?; "
            "name one of them, or leave the id field unset to number the records by row"]
    assert not out.exists()
    typo = recipe_file(MINI + "input: {id_field: uuid}\n", name="typo.yaml")
    result = cli("run", typo, "-i", inputs, "-o", out, "-q")
    assert result.exit_code == 1 and f"{typo}: input.id_field 'uuid': no such column" in result.output
    assert "did you mean 'uid'?" in result.output
    # the default `id` may be missing: records are numbered by row, as documented
    fake.rules = [("CRITIC_", {"agree": True})]
    assert cli("run", recipe_file(MINI), "-i", inputs, "-o", out, "-q").exit_code == 0
