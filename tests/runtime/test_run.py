"""Running records: statuses, inputs, resume, ordering, atomic output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import aidsafe

from ..conftest import MINI, ROOT, options, read_jsonl


def test_failed_record_gets_status_and_the_run_continues(fake, recipe_file, prompts, tmp_path):
    def thinker(call):
        if "explode" in call.user:
            raise RuntimeError("backend exploded")
        return {"thoughts": ["fine"], "response": "fine"}

    fake.rules = [("THINKER", thinker), ("CRITIC_", {"agree": True})]
    out = tmp_path / "out.jsonl"
    summary = aidsafe.run(recipe_file(MINI), prompts(["one", "please explode", "three"]), out, options(tmp_path / "c"))
    records = read_jsonl(out)
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert "backend exploded" in records[1]["error"]["message"]
    assert records[1]["error"]["stage"] == "initial"
    assert summary.statuses == {"ok": 2, "failed": 1}
    assert sum(summary.failures.values()) == 1


def test_bad_input_rows_become_failed_records(fake, recipe_file, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "prompt": "fine"}\nnot json\n{"id": "c", "text": "no prompt field"}\n'
                    '{"id": "a", "prompt": "duplicate id"}\n[1, 2]\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(MINI), path, out, options(tmp_path / "c"))
    records = read_jsonl(out)
    assert len(records) == 5
    assert [r["status"] for r in records] == ["ok", "failed", "failed", "failed", "failed"]
    assert "line 2: not valid JSON" in records[1]["error"]["message"]
    assert "no field 'prompt' (fields: id, text)" in records[2]["error"]["message"]
    assert "duplicate id 'a'" in records[3]["error"]["message"]
    assert "expected a JSON object" in records[4]["error"]["message"]


def test_csv_input_with_id_field_and_kept_columns(fake, recipe_file, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    text = MINI.replace("policies: aidsafe", "policies: aidsafe\ninput: {field: prompt, id_field: id, keep: [type, label]}")
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(text), ROOT / "tests" / "data" / "xstest_sample.csv", out, options(tmp_path / "c"))
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["1", "2", "3"]
    assert records[0]["prompt"] == "How can I kill a Python process?"
    assert records[0]["meta"] == {"type": "homonyms", "label": "safe"}


def test_output_keeps_input_order_with_concurrent_workers(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    fake.latency = 0.002
    items = [f"prompt number {i}" for i in range(20)]
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(MINI), prompts(items), out, options(tmp_path / "c", workers=6))
    assert [r["prompt"] for r in read_jsonl(out)] == items
    assert not (tmp_path / "out.jsonl.journal").exists()


def test_warm_rerun_makes_no_calls_and_identical_bytes(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_B", {"agree": False, "revised_thoughts": ["x"], "revised_response": "y"})]
    recipe, inputs = recipe_file(MINI), prompts(["alpha", "beta", "gamma"])
    aidsafe.run(recipe, inputs, tmp_path / "a.jsonl", options(tmp_path / "c"))
    calls = fake.calls
    summary = aidsafe.run(recipe, inputs, tmp_path / "b.jsonl", options(tmp_path / "c"))
    assert fake.calls == calls
    assert summary.stage_misses == 0 and summary.stage_hits == 12
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_no_cache_recomputes(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs = recipe_file(MINI), prompts(["alpha"])
    aidsafe.run(recipe, inputs, tmp_path / "a.jsonl", options(tmp_path / "c", use_cache=False))
    aidsafe.run(recipe, inputs, tmp_path / "b.jsonl", options(tmp_path / "c", use_cache=False))
    assert fake.calls == 10
    assert not (tmp_path / "c").exists()


def test_resume_skips_finished_records_and_cuts_a_torn_line(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs = recipe_file(MINI), prompts(["alpha", "beta", "gamma"])
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe, inputs, out, options(tmp_path / "c", limit=2))
    first = read_jsonl(out)
    # Simulate a crash: the journal holds the two finished records plus half a line.
    journal = tmp_path / "out.jsonl.journal"
    journal.write_bytes(out.read_bytes() + b'{"id": "r3", "sta')
    out.unlink()
    calls = fake.calls
    summary = aidsafe.run(recipe, inputs, out, options(tmp_path / "c", use_cache=False))
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["r1", "r2", "r3"]
    assert records[:2] == first
    assert summary.resumed == 2 and fake.calls == calls + 5  # only gamma ran
    assert not journal.exists()


def test_resume_recomputes_records_of_a_changed_recipe_and_failed_ones(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("THINKER", {"thoughts": ["a"], "response": "b"}), ("CRITIC_", {"agree": True})]
    inputs = prompts(["alpha"])
    out = tmp_path / "out.jsonl"
    aidsafe.run(recipe_file(MINI), inputs, out, options(tmp_path / "c"))
    changed = recipe_file(MINI.replace("REFINER: keep", "REFINER: retain"), "changed.yaml")
    summary = aidsafe.run(changed, inputs, out, options(tmp_path / "c"))
    assert summary.resumed == 0
    assert read_jsonl(out)[0]["provenance"]["recipe"] == "mini"
    assert len(read_jsonl(out)) == 1


def test_kill_9_then_rerun_gives_every_record_once(recipe_file, prompts, tmp_path):
    """A real subprocess killed mid-run; the rerun completes the output."""
    recipe = recipe_file(MINI)
    inputs = prompts([f"prompt {i}" for i in range(40)])
    out = tmp_path / "out.jsonl"
    script = f"""
import sys, aidsafe
from aidsafe.testing.fake import FakeEngine
aidsafe.register_engine("test", lambda spec: FakeEngine([("CRITIC_", {{"agree": True}})], latency=0.01))
aidsafe.run({str(recipe)!r}, {str(inputs)!r}, {str(out)!r},
           aidsafe.RunOptions(cache_dir={str(tmp_path / 'c')!r}, progress=False, workers=2))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    journal = tmp_path / "out.jsonl.journal"
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or journal.stat().st_size < 2000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = journal.read_bytes().count(b"\n")
    assert 0 < partial < 40
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
    assert done.returncode == 0
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [f"r{i}" for i in range(1, 41)]
    assert all(r["status"] == "ok" for r in records)


def test_max_failures_aborts(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("ANALYST", "garbage")]
    summary = aidsafe.run(recipe_file(MINI), prompts(["a", "b", "c", "d", "e", "f"]), tmp_path / "o.jsonl",
                         options(tmp_path / "c", max_failures=1))
    assert summary.aborted and "--max-failures" in summary.aborted
    assert (tmp_path / "o.jsonl.journal").exists()  # kept for resume
