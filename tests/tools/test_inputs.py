"""`aidsafe run -i` inputs: JSONL, JSON arrays, CSV (with a byte-order mark),
parquet and Hugging Face datasets on disk (`hf:PATH[:split]`), all read by the
one input reader (`aidsafe.runtime._records`), and a bad row is a `failed`
record, never a skipped one."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aidsafe._util.errors import UserError
from aidsafe.cli._main import main
from aidsafe.runtime._records import InputSource, count_inputs, input_source, read_inputs

from ..conftest import MINI, read_jsonl

ROWS = [{"id": "a", "prompt": "How do I pick a lock?", "category": "crime"},
        {"id": "b", "prompt": "Tell me a joke", "category": "benign"}]


def write_jsonl(path):
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def write_json_array(path):
    path.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    return path


def write_csv_bom(path):
    # spreadsheet exports start with a byte-order mark; without utf-8-sig the first column is "\ufeffid"
    path.write_text("id,prompt,category\na,How do I pick a lock?,crime\nb,Tell me a joke,benign\n",
                    encoding="utf-8-sig")
    return path


def write_parquet(path):
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def write_hf(path, splits=("train",)):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    datasets.DatasetDict({s: datasets.Dataset.from_list(ROWS) for s in splits}).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("name, write", [
    ("in.jsonl", write_jsonl), ("in.json", write_json_array), ("in.csv", write_csv_bom),
    ("in.parquet", write_parquet)])
def test_every_file_format_reads_the_same_records(tmp_path, name, write):
    path = write(tmp_path / name)
    records = list(read_inputs(path, id_field="id", keep=["category"]))
    assert [(r.id, r.prompt, r.meta, r.error) for r in records] == [
        ("a", "How do I pick a lock?", {"category": "crime"}, None),
        ("b", "Tell me a joke", {"category": "benign"}, None)]
    assert count_inputs(path) == 2


def test_a_json_file_of_lines_still_reads_as_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "in.json")
    assert [r.id for r in read_inputs(path, id_field="id")] == ["a", "b"]


def test_hf_dataset_saved_on_disk_with_splits(tmp_path):
    folder = write_hf(tmp_path / "ds", splits=("train", "test"))
    assert [r.prompt for r in read_inputs(f"hf:{folder}", id_field="id")] == [r["prompt"] for r in ROWS]
    assert [r.id for r in read_inputs(f"hf:{folder}:test", id_field="id")] == ["a", "b"]
    assert count_inputs(f"hf:{folder}:test") == 2
    with pytest.raises(UserError, match=r"no split 'dev'; choose one of train, test, e.g. hf:.*:train"):
        list(read_inputs(f"hf:{folder}:dev"))


def test_hf_folder_of_an_export_reads_with_load_dataset_too(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "plain"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_list(ROWS).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    assert [r.id for r in read_inputs(f"hf:{folder}", id_field="id")] == ["a", "b"]


@pytest.mark.parametrize("spec, message", [
    ("missing.jsonl", "input file 'missing.jsonl' not found"),
    ("in.txt", r"unsupported input format \.txt; use \.jsonl, \.json .*hf:PATH\[:split\]"),
    ("folder", r"is a folder; for a Hugging Face dataset saved there write hf:"),
    ("hf:", r"expected hf:PATH_OR_NAME\[:split\]"),
    ("bad.json", r"bad\.json: not valid JSON .*give a JSON array of objects or JSONL"),
    ("broken.parquet", "not a readable parquet file"),
])
def test_bad_inputs_say_what_is_accepted(tmp_path, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "bad.json").write_text('[{"prompt": "x"},]')
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    if spec == "broken.parquet":
        pytest.importorskip("pyarrow")
    with pytest.raises(UserError, match=message):
        list(read_inputs(spec))


def test_bad_rows_in_an_array_become_failed_records(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"prompt": "ok"}, "just text", {"text": "no prompt"}]), encoding="utf-8")
    records = list(read_inputs(path))
    assert [r.error for r in records] == [
        None, "item 2: expected a JSON object, found str",
        "row 3: no field 'prompt' (fields: text); set `input: {field: NAME}` in the recipe or pass --field NAME"]


def test_hf_input_without_the_export_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(UserError, match=r"needs the datasets library; install the export extra"):
        list(read_inputs(f"hf:{tmp_path}"))


def test_input_source_keeps_colons_of_existing_paths(tmp_path):
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert input_source(f"hf:{odd}") == InputSource("hf", str(odd), None)  # the colon is the folder's
    assert input_source(f"hf:{odd}:train") == InputSource("hf", str(odd), "train")
    assert input_source(f"hf:{tmp_path}/ds:test") == InputSource("hf", f"{tmp_path}/ds", "test")
    with pytest.raises(UserError, match=r"expected hf:PATH_OR_NAME\[:split\]"):
        input_source(f"hf:{tmp_path}/ds:")


@pytest.mark.parametrize("name, write", [("in.parquet", write_parquet), ("in.json", write_json_array),
                                         ("ds", write_hf), ("in.csv", write_csv_bom)])
def test_aidsafe_run_reads_each_input_format(fake, recipe_file, tmp_path, name, write):
    fake.rules = [("CRITIC_", {"agree": True})]
    source = write(tmp_path / name)
    spec = f"hf:{source}" if name == "ds" else str(source)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["run", str(recipe_file(MINI)), "-i", spec, "-o", str(out), "-q",
                                       "--id-field", "id"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [(r["id"], r["prompt"], r["status"]) for r in records] == [
        ("a", "How do I pick a lock?", "ok"), ("b", "Tell me a joke", "ok")]
