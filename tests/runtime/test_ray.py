"""The Ray executor with a local Ray instance (slow to start: one test)."""

from __future__ import annotations

import pytest

import aidsafe
from aidsafe.testing.mock_server import MockOpenAIServer

from ..conftest import MINI, read_jsonl

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")


def test_ray_executor_runs_records_in_input_order_and_uses_the_cache(recipe_file, prompts, tmp_path):
    with MockOpenAIServer() as server:
        recipe = recipe_file(MINI.replace('model: "fake:test"', f'model: openai/mock-model, api_base: "{server.url}"'))
        inputs = prompts(["first prompt", "second prompt"])
        options = aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False, executor="ray", workers=2)
        summary = aidsafe.run(recipe, inputs, tmp_path / "ray.jsonl", options)
        assert summary.statuses == {"ok": 2} and summary.stage_misses == 8
        records = read_jsonl(tmp_path / "ray.jsonl")
        assert [r["id"] for r in records] == ["r1", "r2"]
        calls = server.calls  # how many turns the deliberation took depends on the scripted `agree`
        assert calls == sum(r["provenance"]["calls"] for r in records) >= 10
        # the same cache serves a thread run: no new calls, same records
        again = aidsafe.run(recipe, inputs, tmp_path / "thread.jsonl",
                           aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False))
        assert server.calls == calls and again.stage_hits == 8
        assert read_jsonl(tmp_path / "thread.jsonl") == records
    assert not ray.is_initialized()
