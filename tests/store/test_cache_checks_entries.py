"""Issue 29, item 12: the cache checks what it serves. A stage entry whose
fields have the wrong type for what the stage declares (`intents: 5`), or a
call entry that is not the shape of an answer (`parts: "zz"`), is dropped
with one warning and recomputed: it never reaches a record."""

from __future__ import annotations

import json

import aidsafe

from ..conftest import MINI, options, read_jsonl


def _rewrite_entries(directory, section, change):
    from aidsafe.store._cache import Cache

    cache = Cache(directory)
    store = cache._section(section)
    for key in list(store.iterkeys()):
        value = json.loads(store.get(key))
        store.set(key, json.dumps(change(value)))
    cache.close()


def _tamper_stage(value):
    updates = value["updates"]
    if "intents" in updates:
        updates["intents"] = 5
    return value


def _tamper_call(value):
    value["response"]["message"]["parts"] = "zz"
    return value


def _warm_run(recipe, inputs, tmp_path, name, capsys):
    capsys.readouterr()
    summary = aidsafe.run(recipe, inputs, tmp_path / name, options(tmp_path / "c"))
    return summary, read_jsonl(tmp_path / name), capsys.readouterr().err


def test_a_clean_warm_rerun_drops_nothing(fake, recipe_file, prompts, tmp_path, capsys):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs = recipe_file(MINI), prompts(["one", "two"])
    aidsafe.run(recipe, inputs, tmp_path / "first.jsonl", options(tmp_path / "c"))
    summary, _, err = _warm_run(recipe, inputs, tmp_path, "again.jsonl", capsys)
    assert summary.stage_misses == 0 and "failed its check" not in err


def test_a_stage_entry_with_a_wrong_type_is_dropped_and_recomputed(fake, recipe_file, prompts, tmp_path, capsys):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs = recipe_file(MINI), prompts(["one", "two"])
    aidsafe.run(recipe, inputs, tmp_path / "first.jsonl", options(tmp_path / "c"))
    first = read_jsonl(tmp_path / "first.jsonl")
    _rewrite_entries(tmp_path / "c", "stages", _tamper_stage)
    summary, records, err = _warm_run(recipe, inputs, tmp_path, "again.jsonl", capsys)
    assert [r["intents"] for r in records] == [r["intents"] for r in first]
    assert all(isinstance(r["intents"], list) for r in records) and summary.statuses == {"ok": 2}
    assert err.count("failed its check") == 1 and "stage intents: intents is 5 (int), declared list[str]" in err


def test_a_call_entry_that_is_not_an_answer_is_dropped_and_recomputed(fake, recipe_file, prompts, tmp_path, capsys):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs = recipe_file(MINI), prompts(["one", "two"])
    aidsafe.run(recipe, inputs, tmp_path / "first.jsonl", options(tmp_path / "c"))
    first = read_jsonl(tmp_path / "first.jsonl")
    calls = fake.calls
    _rewrite_entries(tmp_path / "c", "calls", _tamper_call)
    # only the call cache can answer: the stage cache is gone
    _rewrite_entries(tmp_path / "c", "stages", lambda v: {"broken": True})
    summary, records, err = _warm_run(recipe, inputs, tmp_path, "again.jsonl", capsys)
    strip = lambda r: {k: v for k, v in r.items() if k != "provenance"}  # noqa: E731
    assert [strip(r) for r in records] == [strip(r) for r in first]
    assert fake.calls > calls  # the tampered answers were recomputed, not served
    assert err.count("failed its check") == 1 and "does not have the shape of an answer" in err
