"""Models from recipes: remote servers, overrides, keys, identities."""

from __future__ import annotations

import pytest

import aidsafe
from aidsafe._util.errors import ModelError
from aidsafe.config._specs import ModelSpec
from aidsafe.models._engine import build_models
from aidsafe.store._cache import Cache
from aidsafe.testing.mock_server import MockOpenAIServer

from ..conftest import MINI, read_jsonl


def remote_recipe(recipe_file, url, extra=""):
    return recipe_file(MINI.replace('model: "fake:test"',
                                    f'model: openai/mock-model, api_base: "{url}", api_key_env: AIDSAFE_TEST_KEY{extra}'))


def test_end_to_end_against_an_openai_compatible_server(recipe_file, prompts, tmp_path, monkeypatch):
    monkeypatch.setenv("AIDSAFE_TEST_KEY", "sk-very-secret-value")
    with MockOpenAIServer() as server:
        url = server.url
        out = tmp_path / "out.jsonl"
        summary = aidsafe.run(remote_recipe(recipe_file, server.url), prompts(["alpha", "beta"]), out,
                             aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False))
        assert summary.statuses == {"ok": 2}
        assert server.calls == 10
        assert all(body["model"] == "mock-model" for body in server.log)
    record = read_jsonl(out)[0]
    assert record["provenance"]["models"]["default"]["api_base"] == url
    assert record["provenance"]["tokens"]["input"] > 0
    # the key never lands in the cache or the output
    for path in list((tmp_path / "c").rglob("*")) + [out]:
        if path.is_file():
            assert b"sk-very-secret-value" not in path.read_bytes(), path


def test_missing_key_variable_is_a_clear_error(recipe_file, prompts, tmp_path, monkeypatch):
    monkeypatch.delenv("AIDSAFE_TEST_KEY", raising=False)
    with pytest.raises(ModelError, match=r"reads its API key from \$AIDSAFE_TEST_KEY, which is not set"):
        aidsafe.run(remote_recipe(recipe_file, "http://127.0.0.1:9/v1"), prompts(["a"]), tmp_path / "o.jsonl",
                   aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False))


def test_transient_server_errors_are_retried(recipe_file, prompts, tmp_path, monkeypatch):
    monkeypatch.setenv("AIDSAFE_TEST_KEY", "k")
    with MockOpenAIServer(fail_rate=0.3, fail_statuses=(429, 500), retry_after=0.01, seed=1) as server:
        summary = aidsafe.run(remote_recipe(recipe_file, server.url, ", num_retries: 6"), prompts(["a", "b"]),
                             tmp_path / "o.jsonl", aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False))
        assert summary.statuses == {"ok": 2}
        assert sum(server.failures.values()) > 0


def test_model_override_replaces_the_recipe_model(fake, recipe_file, prompts, tmp_path):
    text = MINI.replace('model: "fake:test"', "model: openai/never-called")
    fake.rules = [("CRITIC_", {"agree": True})]
    summary = aidsafe.run(recipe_file(text), prompts(["a"]), tmp_path / "o.jsonl",
                         aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False,
                                           model_overrides={"default": "fake:test"}))
    assert summary.statuses == {"ok": 1} and fake.calls == 5
    with pytest.raises(ModelError, match="did you mean 'default'"):
        aidsafe.run(recipe_file(text), prompts(["a"]), tmp_path / "o2.jsonl",
                   aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False, model_overrides={"defualt": "x"}))


def test_identity_includes_the_endpoint(tmp_path):
    specs = {"a": ModelSpec("a", "openai/m", api_base="http://127.0.0.1:1/v1"),
             "b": ModelSpec("b", "openai/m", api_base="http://127.0.0.1:2/v1")}
    handles = build_models(specs, Cache(tmp_path / "c"))
    assert handles["a"].identity != handles["b"].identity


def test_sampling_params_change_the_call_key(fake, tmp_path):
    import dspy

    specs = {"cold": ModelSpec("cold", "fake:test", params={"temperature": 0.0}),
             "warm": ModelSpec("warm", "fake:test", params={"temperature": 0.9})}
    handles = build_models(specs, Cache(tmp_path / "c"))
    for handle in handles.values():
        handle.lm("hello")
        handle.lm("hello")
    assert fake.calls == 2  # one per temperature; the repeats are cached
    assert dspy.settings.lm is None  # no global LM is ever configured


def test_rate_limiter_blocks_past_rpm_and_tpm():
    from aidsafe.models._engine import RateLimiter

    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(rpm=2, clock=lambda: now[0], sleep=sleep)
    limiter.acquire()
    limiter.acquire()
    limiter.acquire()  # third request in the same minute waits for the window
    assert slept and sum(slept) == pytest.approx(60.0)
    tokens = RateLimiter(tpm=100, clock=lambda: now[0], sleep=sleep)
    slot = tokens.acquire()
    tokens.settle(slot, 150)
    before = now[0]
    tokens.acquire()
    assert now[0] - before == pytest.approx(60.0)


def test_backoff_is_jittered_and_honours_retry_after():
    from aidsafe.models._engine import RemoteEngine

    engine_ = RemoteEngine(ModelSpec("m", "openai/m", api_base="http://127.0.0.1:1/v1"))
    delays = [engine_.backoff(3) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in delays) and len(set(delays)) > 150  # full jitter, no lockstep
    assert 2.0 <= engine_.backoff(0, retry_after=2.0) <= 2.06
    assert engine_.backoff(10) <= RemoteEngine.BACKOFF_CAP


def test_sample_index_varies_the_seed_where_the_backend_takes_one(fake, tmp_path):
    from aidsafe.models._engine import sample_index

    seeds = []

    class Seeded:
        supported_params = frozenset({"seed", "temperature"})

        def identity(self):
            return {"backend": "seeded"}

        def complete(self, request):
            seeds.append(request.config.seed)
            return fake.complete(request)

    from aidsafe.models._engine import register_engine, unregister_engine

    register_engine("seeded", lambda spec: Seeded())
    try:
        handles = build_models({"m": ModelSpec("m", "fake:seeded", params={"temperature": 0.9})}, Cache(tmp_path / "c"))
        for index in range(3):
            with sample_index(index):
                handles["m"].lm("same prompt")
    finally:
        unregister_engine("seeded")
    assert seeds == [None, 1, 2]


def test_remote_backend_pins_litellm_to_its_bundled_cost_map(fake, tmp_path, monkeypatch):
    """Importing sets nothing; building a remote model keeps LiteLLM off the network."""
    monkeypatch.delenv("LITELLM_LOCAL_MODEL_COST_MAP", raising=False)
    build_models({"f": ModelSpec("f", "fake:test")}, Cache(tmp_path / "c"))  # not remote: untouched
    import os

    assert "LITELLM_LOCAL_MODEL_COST_MAP" not in os.environ
    build_models({"r": ModelSpec("r", "openai/m", api_base="http://127.0.0.1:1/v1")}, Cache(tmp_path / "c"))
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")  # a user's own choice wins
    build_models({"r": ModelSpec("r", "openai/m", api_base="http://127.0.0.1:1/v1")}, Cache(tmp_path / "c"))
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "False"


def test_run_and_inspection_models_are_built_the_same_way(fake, recipe_file, tmp_path):
    from aidsafe.config import load_recipe
    from aidsafe.models._inspect import inspection_models

    recipe = load_recipe(recipe_file(MINI))
    real = build_models(recipe.models, Cache(tmp_path / "c"))
    inspected = inspection_models(recipe, identity="backend")
    assert real.keys() == inspected.keys()
    for name, handle in real.items():
        other = inspected[name]
        assert (other.lm.model, other.lm.kwargs, other.identity) == (handle.lm.model, handle.lm.kwargs, handle.identity)
        assert other.engine.name == handle.engine.name == name
