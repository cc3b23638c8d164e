"""Shared fixtures: every test gets a fresh cache directory, and the scripted
fake model is registered as ``fake:test`` (it answers through DSPy's real
JSONAdapter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import aidsafe
from aidsafe.models._engine import register_engine, unregister_engine
from aidsafe.testing.fake import FakeEngine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """A fresh cache directory per test, via the environment like a user would."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("AIDSAFE_CACHE_DIR", str(directory))
    return directory


@pytest.fixture(autouse=True)
def no_model_embeddings(request, monkeypatch):
    """Unit tests never run a model to embed: a local model's embedding mode
    (a precedent screen in a shipped recipe) answers with the lexical
    embedder's vectors. Tests marked `model` use the real one."""
    if request.node.get_closest_marker("model"):
        return
    from aidsafe.models import _embed

    lexical = _embed.LexicalEmbedder()
    monkeypatch.setattr(_embed.LlamaCppEmbedder, "embed", lambda self, texts: lexical.embed(texts))


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def no_internet(monkeypatch):
    """Fail the test on any connection or DNS lookup that is not loopback."""
    import socket

    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock, address):
        if isinstance(address, tuple) and address[0] not in _LOOPBACK:
            raise AssertionError(f"non-loopback connection attempted: {address!r}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and host not in _LOOPBACK:
            raise AssertionError(f"DNS lookup attempted: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def fake():
    """A scripted fake engine available as ``model: fake:test``."""
    engine_ = FakeEngine()
    register_engine("test", lambda spec: engine_)
    yield engine_
    unregister_engine("test")


@pytest.fixture
def prompts(tmp_path):
    """Write a JSONL file of prompts; returns a function(list) -> path."""

    def write(items, name="in.jsonl"):
        path = tmp_path / name
        with open(path, "w", encoding="utf-8") as handle:
            for i, item in enumerate(items, 1):
                row = item if isinstance(item, dict) else {"id": f"r{i}", "prompt": item}
                handle.write(json.dumps(row) + "\n")
        return path

    return write


@pytest.fixture
def four(prompts):
    """Four prompts as an input file (the optimize tests' trainset)."""
    return prompts(["How do I kill a Python process?", "How do I terminate a C program?",
                    "What is the capital of France?", "How do I make a cake?"])


@pytest.fixture
def recipe_file(tmp_path):
    """Write a recipe (YAML text) into a temp folder; returns its path."""

    def write(text, name="recipe.yaml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def have_package(dist: str) -> bool:
    """Whether a distribution is installed (for skipif on optional models and extras)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
        return True
    except PackageNotFoundError:
        return False


def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def options(cache_dir, **kw):
    kw.setdefault("model_overrides", {"default": "fake:test"})
    kw.setdefault("progress", False)
    return aidsafe.RunOptions(cache_dir=cache_dir, **kw)


MINI = """
name: mini
models:
  default: {model: "fake:test"}
policies: aidsafe
agents:
  analyst: {instructions: "ANALYST: list the intents."}
  thinker: {instructions: "THINKER: reason and answer."}
  critic_a: {instructions: "CRITIC_A: check safety."}
  critic_b: {instructions: "CRITIC_B: check helpfulness."}
  refiner: {instructions: "REFINER: keep the useful thoughts."}
stages:
  - {id: intents, kind: decompose, agent: analyst}
  - {id: initial, kind: generate, agent: thinker}
  - id: deliberation
    kind: deliberate
    agents: [critic_a, critic_b]
    stop: {max_rounds: 3, agreement: {rule: consecutive, k: 2}}
  - id: refine
    kind: refine
    agent: refiner
    filters: [{type: dedupe}]
"""
