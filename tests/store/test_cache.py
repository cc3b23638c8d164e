"""The content-addressed cache: what reruns, what is reused, and robustness."""

from __future__ import annotations

import os
import subprocess
import sys

import aidsafe
from aidsafe.config._recipe import load_recipe
from aidsafe.models._engine import build_models
from aidsafe.pipeline._compile import compile_recipe
from aidsafe.runtime._plan import explain_record, plan_run
from aidsafe.store._cache import Cache

from ..conftest import MINI, ROOT, options, read_jsonl


def count_by_role(fake):
    roles = {}
    for call in fake.seen:
        role = next((r for r in ("ANALYST", "THINKER", "CRITIC_A", "CRITIC_B", "REFINER") if r in call.system), "?")
        roles[role] = roles.get(role, 0) + 1
    return roles


def test_changing_only_the_refiner_reruns_only_refinement(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_B", {"agree": False, "revised_thoughts": ["x"], "revised_response": "y"})]
    inputs = prompts(["alpha", "beta"])
    aidsafe.run(recipe_file(MINI), inputs, tmp_path / "a.jsonl", options(tmp_path / "c"))
    fake.seen.clear()
    changed = recipe_file(MINI.replace("REFINER: keep the useful thoughts.", "REFINER: keep only essentials."), "b.yaml")
    summary = aidsafe.run(changed, inputs, tmp_path / "b.jsonl", options(tmp_path / "c"))
    assert count_by_role(fake) == {"REFINER": 2}
    assert summary.stage_hits == 6 and summary.stage_misses == 2


def test_changing_a_policy_invalidates_every_stage_that_sees_it(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    policy = (ROOT / "policies" / "aidsafe.yaml").read_text()
    (tmp_path / "p1.yaml").write_text(policy)
    (tmp_path / "p2.yaml").write_text(policy.replace("Do not lecture or moralise.", "Never lecture."))
    inputs = prompts(["alpha"])
    aidsafe.run(recipe_file(MINI.replace("policies: aidsafe", "policies: p1.yaml"), "r1.yaml"), inputs,
               tmp_path / "a.jsonl", options(tmp_path / "c"))
    fake.seen.clear()
    aidsafe.run(recipe_file(MINI.replace("policies: aidsafe", "policies: p2.yaml"), "r2.yaml"), inputs,
               tmp_path / "b.jsonl", options(tmp_path / "c"))
    # the analyst (decompose) reads only the query by default: reused; all others see policies
    assert count_by_role(fake) == {"THINKER": 1, "CRITIC_A": 1, "CRITIC_B": 1, "REFINER": 1}
    a, b = read_jsonl(tmp_path / "a.jsonl")[0], read_jsonl(tmp_path / "b.jsonl")[0]
    assert a["provenance"]["policy_hash"] != b["provenance"]["policy_hash"]


def test_two_endpoints_serving_the_same_model_name_do_not_share_entries(tmp_path):
    from aidsafe.testing.mock_server import MockOpenAIServer

    text = MINI.replace('model: "fake:test"', 'model: openai/mock-model, api_base: "URL"')
    with MockOpenAIServer() as one, MockOpenAIServer() as two:
        for server, name in ((one, "one"), (two, "two")):
            path = tmp_path / f"{name}.yaml"
            path.write_text(text.replace("URL", server.url))
            aidsafe.run(path, ROOT / "tests" / "data" / "xstest_sample.csv", tmp_path / f"{name}.jsonl",
                       aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False, limit=1))
        # the same answers from both (scripted by the request), each endpoint's calls its own
        assert one.calls == two.calls >= 5
        assert read_jsonl(tmp_path / "two.jsonl")[0]["provenance"]["calls"] == two.calls


def test_corrupt_entries_are_dropped_and_recomputed(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs = recipe_file(MINI), prompts(["alpha"])
    aidsafe.run(recipe, inputs, tmp_path / "a.jsonl", options(tmp_path / "c"))
    cache = Cache(tmp_path / "c")
    for name in ("calls", "stages"):
        store = cache._section(name)
        for key in list(store.iterkeys()):
            store.set(key, "{not json")
    cache.close()
    calls = fake.calls
    aidsafe.run(recipe, inputs, tmp_path / "b.jsonl", options(tmp_path / "c"))
    assert fake.calls == calls * 2
    assert read_jsonl(tmp_path / "b.jsonl")[0]["status"] == "ok"


def test_two_processes_share_one_cache(recipe_file, prompts, tmp_path):
    recipe = recipe_file(MINI)
    inputs = prompts([f"shared prompt {i}" for i in range(12)])
    script = """
import sys, aidsafe
from aidsafe.testing.fake import FakeEngine
aidsafe.register_engine("test", lambda spec: FakeEngine([("CRITIC_", {"agree": True})], latency=0.002))
s = aidsafe.run(sys.argv[1], sys.argv[2], sys.argv[3], aidsafe.RunOptions(cache_dir=sys.argv[4], progress=False, workers=3))
assert s.statuses == {"ok": 12}, s.statuses
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(recipe), str(inputs), str(tmp_path / f"o{i}.jsonl"),
                               str(tmp_path / "c")], env=env, stderr=subprocess.PIPE) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()[-2000:]
    a, b = read_jsonl(tmp_path / "o0.jsonl"), read_jsonl(tmp_path / "o1.jsonl")
    assert [r["cot"] for r in a] == [r["cot"] for r in b]
    assert len(a) == 12


def _program(recipe_path, cache_dir):
    recipe = load_recipe(recipe_path)
    cache = Cache(cache_dir)
    return compile_recipe(recipe, build_models(recipe.models, cache), cache=cache)


def test_plan_counts_reuse_before_running(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs = recipe_file(MINI), prompts(["alpha", "beta"])
    plan = plan_run(_program(recipe, tmp_path / "c"), inputs)
    assert plan.stages["intents"].to_run == 2 and plan.stages["deliberation"].max_new_calls == 12
    aidsafe.run(recipe, inputs, tmp_path / "a.jsonl", options(tmp_path / "c", limit=1))
    changed = recipe_file(MINI.replace("REFINER: keep", "REFINER: retain"), "b.yaml")
    calls = fake.calls
    plan = plan_run(_program(changed, tmp_path / "c"), inputs)
    assert fake.calls == calls  # planning calls no model
    assert (plan.stages["intents"].reused, plan.stages["intents"].to_run) == (1, 1)
    assert (plan.stages["refine"].reused, plan.stages["refine"].to_run) == (0, 2)
    assert "total new LM calls <=" in "\n".join(plan.lines())


def test_explain_names_the_changed_part(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    inputs = prompts(["alpha"])
    aidsafe.run(recipe_file(MINI), inputs, tmp_path / "a.jsonl", options(tmp_path / "c"))
    changed = recipe_file(MINI.replace("REFINER: keep", "REFINER: retain"), "recipe.yaml")
    lines = explain_record(_program(changed, tmp_path / "c"), "r1", inputs)
    assert lines[:3] == ["[intents] cache hit", "[initial] cache hit", "[deliberation] cache hit"]
    assert lines[3].startswith("[refine] miss: changed agent refiner")


def test_clear_one_stage(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs = recipe_file(MINI), prompts(["alpha"])
    aidsafe.run(recipe, inputs, tmp_path / "a.jsonl", options(tmp_path / "c"))
    cache = Cache(tmp_path / "c")
    assert cache.clear(stage="refine") == 2  # the stage entry and its explain entry
    cache.close()
    summary = aidsafe.run(recipe, inputs, tmp_path / "b.jsonl", options(tmp_path / "c"))
    assert (summary.stage_hits, summary.stage_misses) == (3, 1)


def test_write_behind_reads_its_own_writes_and_flushes_on_close(tmp_path):
    """A run's cache hands writes to one writer thread: a read sees a write
    still waiting, a dropped entry stays dropped, and ``close`` stores the
    rest so another process (here another Cache) reads them."""
    cache = Cache(tmp_path / "c", write_behind=True)
    for n in range(50):
        cache.put_call(f"k{n}", {"response": {"n": n}})
    assert cache.get_call("k7")["response"] == {"n": 7}  # waiting or stored: visible either way
    cache.drop_call("k8")
    cache.put_stage("s1", {"updates": {}, "filtered": None, "seconds": 0.0, "usage": {}}, "intents")
    cache.close()
    other = Cache(tmp_path / "c")
    assert other.get_call("k49")["response"] == {"n": 49}
    assert other.get_call("k8") is None
    assert other.get_stage("s1") is not None
    assert other.stats()["sections"]["calls"]["entries"] == 49
    other.close()


def test_write_behind_on_an_unusable_directory_warns_once_and_keeps_going(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = Cache(blocker / "c", write_behind=True)
    cache.put_call("k", {"response": {}})
    cache.flush()
    assert cache.enabled is False and cache.get_call("k") is None
    cache.close()
    assert capsys.readouterr().err.count("warning: cache directory") == 1


def test_a_fully_cached_record_is_served_without_the_worker_pool(fake, recipe_file, prompts, tmp_path, monkeypatch):
    """A rerun answers every cached record in the run's own thread (no
    hand-off to the workers); a record with a stage to compute still goes to
    them; the summary and the cache's hit counters count each stage once."""
    from aidsafe.runtime import _run

    fake.rules = [("CRITIC_", {"agree": True})]
    recipe = recipe_file(MINI)
    aidsafe.run(recipe, prompts(["alpha", "beta"]), tmp_path / "a.jsonl", options(tmp_path / "c", workers=4))
    submitted = []
    original = _run.ThreadExecutor.submit
    monkeypatch.setattr(_run.ThreadExecutor, "submit", lambda self, item: submitted.append(item.id) or original(self, item))
    fake.seen.clear()
    summary = aidsafe.run(recipe, prompts(["alpha", "beta", "gamma"]), tmp_path / "b.jsonl",
                          options(tmp_path / "c", workers=4))
    assert submitted == ["r3"]  # only the new prompt reached the pool
    assert summary.statuses == {"ok": 3} and summary.stage_hits == 8 and summary.stage_misses == 4
    assert Cache(tmp_path / "c").last_run()["counters"]["stage_hits"] == 8
    assert [r["id"] for r in read_jsonl(tmp_path / "b.jsonl")] == ["r1", "r2", "r3"]
    # the same records, but from another input set (provenance.input names it)
    def without_input(records):
        return [{**r, "provenance": {k: v for k, v in r["provenance"].items() if k != "input"}} for r in records]

    assert without_input(read_jsonl(tmp_path / "b.jsonl")[:2]) == without_input(read_jsonl(tmp_path / "a.jsonl"))
