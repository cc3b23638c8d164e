"""Speculative decoding of local models (``speculative:`` in a models entry):
what the loaders accept and refuse, the model identity, and (``model``-marked)
that greedy output on the smoke model is the same with and without it."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aidsafe.models.local._weights as L
from aidsafe._util.errors import ModelError, RecipeError
from aidsafe.config import load_recipe
from aidsafe.config._specs import ModelSpec
from aidsafe.models._inspect import spec_identity
from aidsafe.models.local._engine import LlamaCppEngine
from aidsafe.models.local._speculative import (
    DRAFT_DEFAULTS,
    NGRAM_DEFAULTS,
    Speculation,
    parse_speculative,
    speculative_problems,
)
from tests.models.test_local_model import _fake_model

RECIPE = """\
extends: {root}/recipes/aidsafe.yaml
models:
  default: {{model: local:qwen-1.5b, speculative: {default}}}
  judge: {{model: local:default, temperature: 0.0{judge}}}
"""


def _recipe(tmp_path, default: str, judge: str = "") -> str:
    from tests.conftest import ROOT

    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(root=ROOT, default=default, judge=judge), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- reading it


def test_ngram_true_and_draft_name_take_the_defaults():
    ngram = parse_speculative({"ngram": True}, "local:default")
    assert ngram == Speculation(ngram=(NGRAM_DEFAULTS["mode"], NGRAM_DEFAULTS["size"], NGRAM_DEFAULTS["max"],
                                       NGRAM_DEFAULTS["min_hits"]))
    draft = parse_speculative({"draft": "local:qwen-0.5b"}, "local:qwen-1.5b")
    assert draft.draft == "qwen-0.5b" and draft.ngram is None
    assert (draft.draft_max, draft.draft_min, draft.p_min) == (DRAFT_DEFAULTS["max"], DRAFT_DEFAULTS["min"],
                                                              DRAFT_DEFAULTS["p_min"])
    assert parse_speculative(None) is None and parse_speculative({"ngram": False}) is None
    full = parse_speculative({"ngram": {"mode": "map-k", "size": 3, "max": 8, "min_hits": 2}})
    assert full.ngram == ("map-k", 3, 8, 2)
    assert full.to_dict() == {"ngram": {"mode": "map-k", "size": 3, "max": 8, "min_hits": 2}}


@pytest.mark.parametrize(("value", "model", "message"), [
    ({"ngram": True}, "openai/gpt-4o-mini", "runs only in the embedded model"),
    ({"draft": "qwen-1.5b"}, "local:qwen-1.5b", "cannot draft for itself"),
    ({"draft": "default"}, "local:qwen-0.5b", "cannot draft for itself"),
    ({"draft": "smoke"}, "local:qwen-1.5b", "different tokenizers"),
    ({"draft": "nope"}, "local:qwen-1.5b", "is not a local model"),
    ({"ngram": True, "draft": "qwen-0.5b"}, "local:qwen-1.5b", "not both"),
    ({"ngram": {"size": 0}}, "local:default", "size must be"),
    ({"ngram": {"mode": "cache"}}, "local:default", "mode must be"),
    ({"draft": {"model": "qwen-0.5b", "p_min": 2}}, "local:qwen-1.5b", "p_min must be"),
    ({"eagle": True}, "local:default", "unknown key 'eagle'"),
    ("fast", "local:default", "expected a mapping"),
])
def test_problems_name_the_fix(value, model, message):
    problems = speculative_problems(value, model)
    assert any(message in text for _, text in problems), problems
    with pytest.raises(ModelError, match="speculative"):
        parse_speculative(value, model)


def test_a_draft_named_by_path_is_left_to_llama_cpp():
    assert speculative_problems({"draft": "/models/tiny-qwen.gguf"}, "local:qwen-1.5b") == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
                        ["ngram", "draft", "model", "size", "max", "min", "p_min", "mode", "x"]), inner, max_size=4),
                    max_leaves=8))
def test_any_value_is_read_or_refused_with_a_message(value):
    """Whatever YAML gives, the check returns problems (never raises), and a
    value without problems parses."""
    problems = speculative_problems(value, "local:qwen-1.5b")
    if not problems and isinstance(value, dict):
        parse_speculative(value, "local:qwen-1.5b")


# ---------------------------------------------------------------- recipes


def test_recipe_accepts_a_draft_and_keeps_it_in_the_spec(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, "{draft: qwen-0.5b}", ", speculative: {ngram: {size: 3, max: 8}}"))
    assert recipe.models["default"].speculative == {"draft": "qwen-0.5b"}
    assert recipe.models["judge"].speculative == {"ngram": {"size": 3, "max": 8}}


@pytest.mark.parametrize(("default", "judge", "where", "message"), [
    ("{draft: smoke}", "", "models.default.speculative.draft", "different tokenizers"),
    ("{ngram: {size: 0}}", "", "models.default.speculative.ngram.size", "minimum 1"),
    ("{draft: {max: 4}}", "", "models.default.speculative.draft", "model"),
    ("{turbo: true}", "", "models.default.speculative", "turbo"),
])
def test_recipe_problems_carry_file_line_and_path(tmp_path, default, judge, where, message):
    path = _recipe(tmp_path, default, judge)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    line = next(p for p in info.value.problems if where in p)
    assert line.startswith(f"{path}:3 ") and message in line


# ---------------------------------------------------------------- identity


def test_speculation_is_part_of_the_identity_only_when_set(tmp_path):
    model = _fake_model(tmp_path)
    plain = LlamaCppEngine(model, n_threads=1).identity()
    assert "speculative" not in plain  # keys of models without it are unchanged
    ngram = LlamaCppEngine(model, n_threads=1, speculative=parse_speculative({"ngram": True})).identity()
    assert ngram["speculative"] == {"ngram": {**NGRAM_DEFAULTS}}
    draft_model = L.LocalModel("d", model.path, "1" * 64)
    draft = LlamaCppEngine(model, n_threads=1, speculative=parse_speculative({"draft": "qwen-0.5b"}),
                           draft=draft_model).identity()
    assert draft["speculative"]["draft"]["model"] == {"name": "d", "sha256": "1" * 64}
    assert len({str(plain), str(ngram), str(draft)}) == 3
    with pytest.raises(ModelError, match="resolved draft"):
        LlamaCppEngine(model, speculative=parse_speculative({"draft": "qwen-0.5b"}))


def test_inspection_identity_follows_the_spec():
    plain = spec_identity(ModelSpec("default", "local:qwen-1.5b"))
    spec = spec_identity(ModelSpec("default", "local:qwen-1.5b", speculative={"draft": "qwen-0.5b"}))
    assert "speculative" not in plain and spec["speculative"]["draft"]["model"] == "qwen-0.5b"


def test_engine_state_round_trips_the_speculation(tmp_path):
    model = _fake_model(tmp_path)
    engine = LlamaCppEngine(model, n_threads=1, speculative=parse_speculative({"ngram": {"size": 3, "max": 8}}))
    state = engine.dump_state()
    assert state["speculative"] == {"ngram": {"mode": "simple", "size": 3, "max": 8, "min_hits": 1}}


# ---------------------------------------------------------------- real model


def _smoke_or_skip():
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install -e '.[local]')")
    try:
        L.find_smoke_model()
    except ModelError as e:
        pytest.skip(f"smoke model unavailable: {e}")


COPY_PROMPT = textwrap.dedent("""\
    Thoughts:
    - The user asks how to kill a Python process that hangs on a lock.
    - This is a question about software, not about harming a person.
    - Decision: answer. The request is harmless and common among developers.
    - The answer should mention kill -TERM with the PID, then kill -KILL.
    Copy the thoughts above word for word, one per line starting with '- '.""")


@pytest.mark.model
def test_greedy_output_is_byte_identical_with_ngram_speculation(tmp_path):
    """The smoke model copying thoughts: the same text with and without
    prompt-lookup speculation, and the speculation really drafted."""
    _smoke_or_skip()
    from dspy.lm15 import Config, Message, Request

    model = L.resolve_local("smoke", tmp_path)
    request = Request(model="local/smoke", messages=(Message.user(COPY_PROMPT),),
                      config=Config(max_tokens=96, temperature=0.0))
    texts, drafted = {}, {}
    for name, spec in (("off", None), ("ngram", parse_speculative({"ngram": True}))):
        engine = LlamaCppEngine(model, n_threads=1, n_ctx=1024, prompt_cache_mib=0, speculative=spec)
        try:
            response = engine.complete(request)
            texts[name] = response.text
            drafted[name] = response.provider_data["timings"].get("draft_n", 0)
            if spec is not None:
                assert engine.runtime()["speculative"] == "ngram simple 4/16"
        finally:
            engine.close()
    assert texts["ngram"] == texts["off"] and texts["off"].strip()
    assert drafted["off"] == 0 and drafted["ngram"] > 0


@pytest.mark.model
def test_a_draft_llama_cpp_refuses_is_an_error_not_a_silent_slowdown(tmp_path):
    """llama.cpp only logs a draft of another tokenizer and runs without it;
    the engine says so and how to fix it."""
    _smoke_or_skip()
    from aidsafe._util.paths import weights_dir

    try:
        draft = L.resolve_local("qwen-0.5b", weights_dir())
    except ModelError as e:
        pytest.skip(f"qwen-0.5b unavailable: {e}")
    engine = LlamaCppEngine(L.resolve_local("smoke", tmp_path), n_threads=1, n_ctx=512, prompt_cache_mib=0,
                            speculative=parse_speculative({"draft": str(draft.path)}), draft=draft)
    with pytest.raises(ModelError, match="does not draft for .*tokenizers differ"):
        engine._ensure_loaded()
    assert engine._server is None
