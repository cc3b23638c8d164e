"""Issue 29, item 1: a hostile row (a lone surrogate, which no UTF-8 file can
hold) in any field of any input format becomes a `failed` record with the
reason; the run, its rerun and ``--plan`` go on. The input reader is fuzzed
with arbitrary Unicode, surrogates included, in every field."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aidsafe.cli._main import main
from aidsafe.runtime._records import read_inputs

from ..conftest import MINI, read_jsonl

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# json.dumps writes a lone surrogate as the escape "\ud800", as the audit's `echo` did
HOSTILE = [{"id": "good1", "prompt": "Tell me a joke"},
           {"id": "s", "prompt": "a\ud800b"},
           {"id": "m", "prompt": "fine", "category": "x\udfffy"},
           {"id": "k\udc80", "prompt": "bad id"},
           {"id": "good2", "prompt": "What is the capital of France?"}]


def _write(path, rows):
    if path.suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(recipe, *args):
    return CliRunner().invoke(main, ["run", str(recipe), *map(str, args)], catch_exceptions=False)


@pytest.mark.parametrize("name", ["in.jsonl", "in.json"])
def test_a_lone_surrogate_row_is_a_failed_record_and_the_run_goes_on(fake, recipe_file, tmp_path, name):
    fake.rules = [("CRITIC_", {"agree": True})]
    source = _write(tmp_path / name, HOSTILE)
    out = tmp_path / "out.jsonl"
    recipe = recipe_file(MINI + "input: {keep: [category]}\n")
    for _ in range(2):  # the rerun (a resume) reads the same rows
        result = _run(recipe, "-i", source, "-o", out, "-q", "--id-field", "id")
        assert result.exit_code == 0, result.output
        records = read_jsonl(out)
        assert [r["status"] for r in records] == ["ok", "failed", "failed", "failed", "ok"]
        assert records[1]["error"]["type"] == "InputError"
        assert "field 'prompt' is not valid Unicode text (a lone surrogate \\ud800 at character 2" \
            in records[1]["error"]["message"]
        assert "field 'category'" in records[2]["error"]["message"]
        assert records[3]["id"] == "k\ufffd" and "field 'id'" in records[3]["error"]["message"]
    plan = _run(recipe, "-i", source, "--plan", "--id-field", "id")
    assert plan.exit_code == 0, plan.output
    assert "Traceback" not in plan.output


def test_a_surrogate_in_a_field_name_is_a_failed_record(tmp_path):
    # pyarrow refuses to store a lone surrogate, so parquet and hf inputs cannot carry one;
    # a row from any reader with a surrogate in a key fails cleanly.
    from aidsafe.runtime import _records

    rows = [(1, {"prompt": "ok"}, None), (2, {"prompt": "x", "bad\udc80key": 1}, None)]
    original = _records.iter_rows
    _records.iter_rows = lambda source: iter(rows)
    try:
        path = _write(tmp_path / "in.jsonl", [{"prompt": "ok"}])
        records = list(read_inputs(path))
    finally:
        _records.iter_rows = original
    assert records[0].error is None
    assert "a field name is not valid Unicode text" in records[1].error


def test_a_model_answer_with_a_lone_surrogate_fails_its_record_only(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True}), ("THINKER", {"reasoning": "r", "response": "bad \ud800 text"})]
    out = tmp_path / "out.jsonl"
    result = _run(recipe_file(MINI), "-i", prompts(["one", "two"]), "-o", out, "-q")
    # every record failed: exit 1 with the reason, but the output is written and readable
    assert "Traceback" not in result.output
    records = read_jsonl(out)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert records[0]["error"]["type"] == "InvalidText"
    assert "a model answer holds a lone surrogate (\\ud800)" in records[0]["error"]["message"]


# every code point, lone surrogates (category Cs) included, plus a few chosen to hurt
any_text = st.one_of(st.text(alphabet=st.characters(exclude_categories=()), max_size=20),
                     st.sampled_from(["a\ud800b", "\udfff", "\ud83d", "\x00", "\u2028", "\ufeff", "\U0001f600"]))
values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), any_text),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(any_text, inner, max_size=3)), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.dictionaries(st.sampled_from(["id", "prompt", "category"]) | any_text, values,
                                     max_size=4), min_size=1, max_size=5),
       suffix=st.sampled_from([".jsonl", ".json"]))
def test_fuzzed_unicode_rows_read_as_records_that_can_be_written(tmp_path, rows, suffix):
    path = _write(tmp_path / f"fuzz{suffix}", rows)
    records = list(read_inputs(path, id_field="id", keep=["category"]))
    assert len(records) == len(rows)
    for record in records:
        # whatever the row held, the record (id, prompt, kept fields, reason) is writable UTF-8
        json.dumps([record.id, record.prompt, record.meta, record.error, record.fields],
                   ensure_ascii=False).encode("utf-8")
        assert (record.prompt is None) == (record.error is not None)
