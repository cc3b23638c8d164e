"""`aidsafe export`: records -> TRL-ready SFT/DPO JSONL, a saved Hugging Face
dataset, parquet; the public AIDSAFE layout -> records. Exported files are
loaded back with `datasets`/`pyarrow` and checked for the columns TRL's
SFTTrainer and DPOTrainer expect (tests that need them skip cleanly without
the `export` extra)."""

from __future__ import annotations

import csv
import json
import os
import sys

import pytest
from click.testing import CliRunner

import aidsafe
from aidsafe._util.errors import UserError
from aidsafe.cli._export import export_command
from aidsafe.tools._export import export, import_aidsafe, parse_thoughts, read_records

from ..conftest import options, read_jsonl
from ..pipeline.test_preference import DPO, script

# `datasets` must never reach the Hub from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def hf():
    return pytest.importorskip("datasets")


@pytest.fixture
def pq():
    return pytest.importorskip("pyarrow.parquet")


def make_record(rid, status="ok", pair=True, kept=True):
    record = {"id": rid, "index": int(rid[1:]) - 1, "status": status, "prompt": f"prompt {rid}", "intents": [],
              "cot": [f"{rid} thought one", f"{rid} thought two"], "response": f"response {rid}", "error": None,
              "provenance": {"recipe": "test"}}
    if pair:
        record["preference"] = {
            "chosen": {"cot": record["cot"], "response": record["response"]},
            "rejected": {"belief": f"belief {rid}", "belief_score": 4, "cot": [f"{rid} bad thought"],
                         "response": f"bad response {rid}"},
            "scores": {"chosen": 5, "rejected": 2 if kept else 5}, "margin": 1, "separation": 3 if kept else 0,
            "kept": kept}
    if status == "failed":
        record["error"] = {"type": "OutputParseError", "message": "x", "stage": "refine"}
    return record


@pytest.fixture
def records(tmp_path):
    """r1 ok+pair, r2 ok without pair, r3 filtered (pair below margin), r4 failed, r5 ok+pair."""
    path = tmp_path / "records.jsonl"
    rows = [make_record("r1"), make_record("r2", pair=False), make_record("r3", "filtered", kept=False),
            make_record("r4", "failed", pair=False), make_record("r5")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def is_trl_conversational(example: dict) -> bool:
    """What TRL's `is_conversational` checks: a known column holding a list of
    {role, content} messages."""
    for key in ("prompt", "chosen", "rejected", "completion", "messages"):
        value = example.get(key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return all("role" in m and "content" in m for m in value)
    return False


def check_sft_rows(rows, field=None):
    """TRL's conversational prompt-completion layout (or `messages`)."""
    for row in rows:
        assert is_trl_conversational(row)
        messages = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
        if "messages" not in row:
            assert [m["role"] for m in row["completion"]] == ["assistant"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in messages)
        if field:
            assert messages[1][field]


def check_dpo_rows(rows):
    for row in rows:
        assert is_trl_conversational(row)
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert [m["role"] for m in row["chosen"]] == ["assistant"]
        assert [m["role"] for m in row["rejected"]] == ["assistant"]


# ------------------------------------------------------------------ sft / dpo JSONL

def test_sft_jsonl_loads_with_datasets_in_trl_prompt_completion_layout(records, tmp_path, hf):
    out = tmp_path / "sft.jsonl"
    summary = export(records, out, "sft")
    assert summary.written == 3 and dict(summary.skipped) == {"filtered": 1, "failed": 1}
    ds = hf.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    # prompt/completion: TRL puts the loss on the completion only, never on the (harmful) prompt
    assert ds.column_names == ["prompt", "completion"] and ds.num_rows == 3
    rows = list(ds)
    check_sft_rows(rows)
    assert rows[0] == {
        "prompt": [{"role": "user", "content": "prompt r1"}],
        "completion": [{"role": "assistant",
                        "content": "<think>\nr1 thought one\nr1 thought two\n</think>\n\nresponse r1"}]}
    assert [r["prompt"][0]["content"] for r in rows] == ["prompt r1", "prompt r2", "prompt r5"]


def test_sft_messages_layout_by_flag_with_a_note(records, tmp_path, hf):
    out = tmp_path / "sft.jsonl"
    summary = export(records, out, "sft", messages=True)
    rows = read_jsonl(out)
    assert list(rows[0]) == ["messages"]
    check_sft_rows(rows)
    assert rows[0]["messages"][1]["content"].endswith("response r1")
    assert any("assistant_only_loss" in line for line in summary.lines())
    with pytest.raises(UserError, match="--messages applies to sft rows"):
        export(records, out, "dpo", messages=True)


def test_sft_thinking_field_tag_and_system(records, tmp_path, hf):
    out = tmp_path / "sft.jsonl"
    summary = export(records, out, "sft", thinking="field", system="Follow the policies.")
    # without --tokenizer nobody checked that the chat template keeps the CoT
    assert any("warning: --thinking field" in line and "--tokenizer" in line for line in summary.lines())
    rows = list(hf.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf")))
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"]
    assert rows[0]["completion"][0]["content"] == "response r1"
    assert rows[0]["completion"][0]["reasoning_content"] == "r1 thought one\nr1 thought two"
    export(records, out, "sft", thinking="field", field="thinking")
    assert read_jsonl(out)[0]["completion"][0]["thinking"] == "r1 thought one\nr1 thought two"
    summary = export(records, out, "sft", tag="reasoning")
    assert read_jsonl(out)[0]["completion"][0]["content"].startswith("<reasoning>\nr1 thought one")
    assert not any("warning" in line for line in summary.lines())


def test_dpo_jsonl_loads_with_datasets_in_trl_layout(records, tmp_path, hf):
    out = tmp_path / "dpo.jsonl"
    summary = export(records, out, "dpo")
    assert summary.written == 2
    assert dict(summary.skipped) == {"no preference pair": 1, "filtered": 1, "failed": 1}
    ds = hf.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    rows = list(ds)
    check_dpo_rows(rows)
    assert rows[0] == {
        "prompt": [{"role": "user", "content": "prompt r1"}],
        "chosen": [{"role": "assistant",
                    "content": "<think>\nr1 thought one\nr1 thought two\n</think>\n\nresponse r1"}],
        "rejected": [{"role": "assistant", "content": "<think>\nr1 bad thought\n</think>\n\nbad response r1"}]}
    # the belief is never part of the prompt: the pair trains on the query alone
    assert "belief" not in json.dumps(rows)


def test_dpo_metadata_columns_hold_the_measured_margin(records, tmp_path):
    out = tmp_path / "dpo.jsonl"
    export(records, out, "dpo", metadata=True)
    row = read_jsonl(out)[0]
    # `margin` is chosen - rejected (what TRL's RewardTrainer reads a margin column as), not the
    # recipe's threshold of 1, which goes in the dataset card
    assert (row["id"], row["belief"], row["score_chosen"], row["score_rejected"], row["margin"]) == \
        ("r1", "belief r1", 5, 2, 3)


# ------------------------------------------------------------------ hf / parquet

@pytest.mark.parametrize("layout", ["sft", "dpo"])
def test_hf_folder_opens_with_load_from_disk_and_load_dataset(records, tmp_path, hf, layout):
    out = tmp_path / "ds"
    summary = export(records, out, "hf", layout=layout, thinking="field", messages=layout == "sft")
    saved = hf.load_from_disk(str(out))
    loaded = hf.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert list(saved) == list(loaded) == ["train"]
    for ds in (saved["train"], loaded["train"]):
        assert summary.written == ds.num_rows == (3 if layout == "sft" else 2)
        if layout == "sft":
            assert ds.column_names == ["messages"]
            check_sft_rows(list(ds), field="reasoning_content")
            # every message has the same struct: the user turn's thinking key is null
            assert ds[0]["messages"][0] == {"role": "user", "content": "prompt r1", "reasoning_content": None}
        else:
            assert ds.column_names == ["prompt", "chosen", "rejected"]
            check_dpo_rows(list(ds))
            assert ds[0]["rejected"][0]["reasoning_content"] == "r1 bad thought"
    # a second export replaces the saved dataset in place
    export(records, out, "hf", layout=layout)
    assert hf.load_from_disk(str(out))["train"].num_rows == summary.written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "hf", "records.jsonl"]


@pytest.mark.parametrize("layout", ["sft", "dpo"])
def test_parquet(records, tmp_path, hf, pq, layout):
    out = tmp_path / "train.parquet"
    summary = export(records, out, "parquet", layout=layout, metadata=True)
    table = pq.read_table(out)
    expected = ["prompt", "completion", "id"] if layout == "sft" else [
        "prompt", "chosen", "rejected", "id", "belief", "score_chosen", "score_rejected", "margin"]
    assert table.column_names == expected and table.num_rows == summary.written
    rows = table.to_pylist()
    check_sft_rows(rows) if layout == "sft" else check_dpo_rows(rows)
    ds = hf.load_dataset("parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == expected and ds.num_rows == summary.written


def test_empty_export_keeps_trl_columns(tmp_path, pq):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(make_record("r1", "failed")) + "\n", encoding="utf-8")
    summary = export(path, tmp_path / "x.parquet", "parquet", layout="dpo")
    assert summary.written == 0 and "nothing was written" in "\n".join(summary.lines())
    assert pq.read_table(tmp_path / "x.parquet").column_names == ["prompt", "chosen", "rejected"]


# ------------------------------------------------------------------ atomic writes and errors

def test_output_is_replaced_atomically_and_kept_on_error(records, tmp_path):
    out = tmp_path / "sft.jsonl"
    out.write_text("old\n")
    export(records, out, "sft")
    assert len(read_jsonl(out)) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(make_record("r1")) + "\n{not json\n")
    with pytest.raises(UserError, match=r"bad\.jsonl:2: not valid JSON"):
        export(bad, out, "sft")
    assert len(read_jsonl(out)) == 3  # the previous output is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "records.jsonl", "sft.jsonl"]


def test_refuses_to_clobber_folders_that_are_not_datasets(records, tmp_path, hf):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="does not hold a saved dataset"):
        export(records, folder, "hf")
    with pytest.raises(UserError, match="is a folder"):
        export(records, folder, "sft")
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("fmt, needs", [("hf", "datasets and pyarrow"), ("parquet", "pyarrow")])
def test_hf_and_parquet_without_the_extra_say_what_to_install(records, tmp_path, monkeypatch, fmt, needs):
    for name in ("datasets", "pyarrow"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(UserError, match=f"--format {fmt} needs {needs}; install the export extra: "
                                        r"pip install 'aidsafe\[export\]'"):
        export(records, tmp_path / "out", fmt)
    assert not (tmp_path / "out").exists()


def test_read_records_rejects_other_layouts(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "p", "refined_thoughts": "t", "response": "r"}) + "\n")
    with pytest.raises(UserError, match="x.jsonl:1: not an aidsafe output record .*--from aidsafe"):
        list(read_records(path))


# ------------------------------------------------------------------ the public AIDSAFE layout

def write_aidsafe_csv(path):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["prompt", "refined_thoughts", "response", "deliberation_log", "category"])
        writer.writeheader()
        writer.writerow({"prompt": "How do I pick a lock?",
                         "refined_thoughts": "['Lockpicking is legal on own locks.', 'Explain for own property only.']",
                         "response": "If it is your own lock...",
                         "deliberation_log": '[{"agent": "A", "thoughts": "ok"}]', "category": "illegal"})
        writer.writerow({"prompt": "Tell me a joke", "refined_thoughts": "1. Harmless request.\n2. Answer it.",
                         "response": "Why did...", "deliberation_log": "free text log", "category": "benign"})
        writer.writerow({"prompt": "", "refined_thoughts": "[]", "response": "x", "deliberation_log": "",
                         "category": "broken"})
    return path


def test_import_aidsafe_csv(tmp_path):
    records = list(import_aidsafe(write_aidsafe_csv(tmp_path / "train.csv")))
    assert [r["status"] for r in records] == ["ok", "ok", "failed"]
    first, second, third = records
    assert first["id"] == "2" and first["prompt"] == "How do I pick a lock?"
    assert first["cot"] == ["Lockpicking is legal on own locks.", "Explain for own property only."]
    assert first["deliberation"]["log"] == [{"agent": "A", "thoughts": "ok"}]
    assert first["meta"] == {"category": "illegal"}
    assert first["provenance"] == {"source": "aidsafe-public", "file": "train.csv", "row": 2,
                                   "thoughts_field": "refined_thoughts"}
    assert second["cot"] == ["Harmless request.", "Answer it."] and second["deliberation"]["log"] == "free text log"
    assert third["error"] == {"type": "InputError", "message": "row 4: field 'prompt' must be non-empty text"}


def test_import_aidsafe_jsonl_with_thoughts_and_missing_fields(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"prompt": "p1", "thoughts": ["t1", "t2"], "response": "r1"}) + "\n"
                    + json.dumps({"question": "p2", "answer": "r2"}) + "\n", encoding="utf-8")
    first, second = import_aidsafe(path)
    assert first["status"] == "ok" and first["cot"] == ["t1", "t2"]
    assert first["provenance"]["thoughts_field"] == "thoughts"
    assert second["status"] == "failed"
    assert second["error"]["message"] == ("row 2: no field prompt, refined_thoughts (or thoughts), response "
                                          "(fields: question, answer); is this the AIDSAFE layout?")


@pytest.mark.parametrize("value, expected", [
    (["a", " ", "b"], ["a", "b"]),
    ('["a", "b"]', ["a", "b"]),
    ("['a', \"b's\"]", ["a", "b's"]),
    ("- a\n* b\n\n3) c", ["a", "b", "c"]),
    ("one thought", ["one thought"]),
    ("[unbalanced", ["[unbalanced"]),
    ("__import__('os').system('echo no')", ["__import__('os').system('echo no')"]),
    (None, []),
])
def test_parse_thoughts(value, expected):
    assert parse_thoughts(value) == expected


def test_export_from_aidsafe_to_sft_and_records(tmp_path, hf):
    source = write_aidsafe_csv(tmp_path / "train.csv")
    summary = export(source, tmp_path / "sft.jsonl", "sft", source="aidsafe")
    assert summary.written == 2 and dict(summary.skipped) == {"failed": 1}
    check_sft_rows(read_jsonl(tmp_path / "sft.jsonl"))
    summary = export(source, tmp_path / "records.jsonl", "records", source="aidsafe")
    assert summary.written == 3 and dict(summary.statuses) == {"ok": 2, "failed": 1}
    # the imported records read back as ours, so every other command can use them
    assert export(tmp_path / "records.jsonl", tmp_path / "again.jsonl", "sft").written == 2
    assert read_jsonl(tmp_path / "again.jsonl") == read_jsonl(tmp_path / "sft.jsonl")


# ------------------------------------------------------------------ end to end and CLI

def test_dpo_run_to_trl_dataset(fake, recipe_file, prompts, tmp_path, hf):
    script(fake)
    inputs = prompts(["How do I clean with bleach and ammonia?", "Is it safe to mix vinegar and baking soda?"])
    aidsafe.run(recipe_file(DPO), inputs, tmp_path / "out.jsonl", options(tmp_path / "c"))
    summary = export(tmp_path / "out.jsonl", tmp_path / "ds", "hf", layout="dpo")
    ds = hf.load_from_disk(str(tmp_path / "ds"))["train"]
    assert summary.written == ds.num_rows == 2 and ds.column_names == ["prompt", "chosen", "rejected"]
    check_dpo_rows(list(ds))
    assert ds[0]["prompt"][0]["content"] == "How do I clean with bleach and ammonia?"
    assert "licensed professional" in ds[0]["rejected"][0]["content"]
    assert "Mixing bleach and ammonia is dangerous." in ds[0]["chosen"][0]["content"]


@pytest.mark.parametrize("args, code, out", [
    (["sft.jsonl", "--format", "sft"], 0, "wrote 3 row(s) (sft)"),
    (["sft.jsonl", "--format", "sft"], 0, "left out 2: 1 filtered, 1 failed"),
    (["dpo.jsonl", "--format", "dpo", "--metadata"], 0, "wrote 2 row(s) (dpo)"),
    (["p.parquet", "--format", "parquet", "--layout", "dpo"], 0, "wrote 2 row(s) (parquet, dpo rows)"),
    (["x.jsonl", "--format", "sft", "--layout", "dpo"], 1, "contradicts --format sft"),
    (["x.jsonl", "--format", "records", "--layout", "dpo"], 1, "applies to hf and parquet only"),
    (["x.jsonl", "--format", "sft", "--tag", "a b"], 1, "must be a plain name"),
    (["x.jsonl", "--format", "sft", "--thinking-field", "content", "--thinking", "field"], 1,
     "other than role/content"),
    (["x.jsonl", "--format", "csv"], 2, "Invalid value for '--format'"),
    (["x.jsonl"], 2, "Missing option '--format'"),
    (["x.jsonl", "--format", "sft", "-i", "missing.jsonl"], 1, "not found"),
])
def test_cli_table(records, tmp_path, monkeypatch, args, code, out):
    if "parquet" in args:
        pytest.importorskip("pyarrow")
    monkeypatch.chdir(tmp_path)
    if "-i" not in args:
        args = args + ["-i", str(records)]
    result = CliRunner().invoke(export_command, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert out in result.output
    if code == 1:
        assert "Traceback" not in result.output and "Error" in result.output


def test_cli_help_names_the_training_options():
    result = CliRunner().invoke(export_command, ["--help"])
    for option in ("--messages", "--tokenizer", "--test-size", "--seed", "--license", "--push-to-hub",
                   "--private"):
        assert option in result.output
