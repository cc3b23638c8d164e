"""Text embeddings for nearest-precedent selection: one :class:`Embedder`
protocol, three backends and a content-addressed cache around them.

* ``lexical``: :class:`LexicalEmbedder`, hashed word and character n-gram
  counts. No model, no network, deterministic: offline use and tests.
* ``local:...`` (the chat models' names: ``local:default``, ``local:smoke``,
  ``local:/path/model.gguf``): :class:`LlamaCppEmbedder`, the same GGUF in
  llama.cpp's embedding mode (a separate instance, loaded on first use).
* any other model string: :class:`RemoteEmbedder`, ``dspy.Embedder`` over
  LiteLLM, e.g. ``openai/text-embedding-3-small`` or an OpenAI-compatible
  ``/embeddings`` server named by ``api_base``.

Every backend returns L2-normalised float32 values (as Python floats), so a
vector read back from the cache equals the one first computed. Build one
with :func:`build_embedder`; with a cache it is a :class:`CachedEmbedder`,
keyed by sha256 of (the embedder's identity, the text).

Importing this module imports neither DSPy nor llama.cpp.
"""

from __future__ import annotations

import array
import hashlib
import math
import os
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aidsafe._util.errors import ModelError
from aidsafe._util.hashing import sha256_of
from aidsafe._util.redact import register_secret_env

if TYPE_CHECKING:
    from aidsafe.config._specs import ModelSpec
    from aidsafe.models.local._weights import LocalModel
    from aidsafe.store._cache import Cache

__all__ = ["EMBED_KEY_VERSION", "POOLINGS", "CachedEmbedder", "Embedder", "LexicalEmbedder", "LlamaCppEmbedder",
           "RemoteEmbedder", "build_embedder", "embedding_key"]

EMBED_KEY_VERSION = 1
POOLINGS = ("mean", "last")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors, one per text, in order.

    ``identity`` holds exactly what changes the vectors (backend, model and
    its sha256 or endpoint, pooling, ...), never keys or speed settings: it
    goes into cache keys and into the identity of a precedent pool."""

    identity: dict

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text (a text with nothing to embed gives zeros)."""
        ...


def _finish(vector) -> list[float]:
    """``vector`` scaled to unit length and rounded to float32."""
    values = [float(v) for v in vector]
    norm = math.sqrt(math.fsum(v * v for v in values))
    if norm > 0:
        values = [v / norm for v in values]
    return array.array("f", values).tolist()


def embedding_key(identity: dict, text: str) -> str:
    """The cache key of ``text`` embedded by an embedder of ``identity``."""
    return sha256_of({"v": EMBED_KEY_VERSION, "embedder": identity, "text": text})


# --------------------------------------------------------------------------
# lexical
# --------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Function words carry no topic; without them two requests match on what
# they are about, not on "how do I".
_STOPWORDS = frozenset(
    "a an and are as at be by can could do does for from had has have how i i'm in into is it it's its me my "
    "of on or our should so some that the their them there these they this to was we what when where which "
    "who why will with would you your".split())
_WEIGHTS = {"w": 1.0, "b": 0.5, "c": 0.25}


class LexicalEmbedder:
    """Hashed n-gram counts: content words, word pairs and the character
    4-grams of each content word (so ``kill`` and ``killing`` overlap),
    weighted 1, 0.5 and 0.25, counts damped by ``1 + log``, hashed with a
    sign into ``dim`` buckets. Deterministic across processes and machines;
    needs nothing but the standard library."""

    def __init__(self, dim: int = 2048):
        if dim < 16:
            raise ModelError(f"lexical embedder: dim must be at least 16, got {dim}")
        self.dim = int(dim)
        self.identity = {"backend": "lexical", "version": 1, "dim": self.dim}

    def features(self, text: str) -> dict[str, int]:
        """How often each feature occurs in ``text``: ``w:`` content words,
        ``b:`` word pairs, ``c:`` character 4-grams (before hashing)."""
        words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
        grams = [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in zip(words, words[1:])]
        for word in words:
            padded = f"<{word}>"
            grams += [f"c:{padded[i:i + 4]}" for i in range(max(1, len(padded) - 3))]
        counts: dict[str, int] = {}
        for gram in grams:
            counts[gram] = counts.get(gram, 0) + 1
        return counts

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text."""
        out = []
        for text in texts:
            vector = [0.0] * self.dim
            for feature, count in self.features(text).items():
                digest = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
                sign = 1.0 if digest >> 63 else -1.0
                vector[digest % self.dim] += sign * _WEIGHTS[feature[0]] * (1.0 + math.log(count))
            out.append(_finish(vector))
        return out

    def __repr__(self) -> str:
        return f"LexicalEmbedder(dim={self.dim})"


# --------------------------------------------------------------------------
# llama.cpp embedding mode
# --------------------------------------------------------------------------

_LLAMA_SERVERS: dict[tuple, Any] = {}
_LLAMA_LOCK = threading.Lock()


class LlamaCppEmbedder:
    """A GGUF model in llama.cpp's embedding mode (xllamacpp, in-process).

    ``pooling`` is ``last`` (the last token's state, what a causal model has
    read everything into; the default: on the default pool it picks better
    precedents than ``mean``, see performance/knn_bench.py) or ``mean`` (the
    average of the token states).
    ``template`` wraps each text before it is embedded (``{text}`` marks
    where; e.g. an instruction that makes the last token summarise what
    matters). Texts longer than ``max_chars`` are cut there; a text still too
    long for the context is halved until it fits (both deterministic, so part
    of the identity). The model loads on the first call, once per process for
    each file and pooling, with ``threads`` CPU threads.
    """

    BATCH = 32

    def __init__(self, model: LocalModel, *, pooling: str = "last", threads: int = 1, n_ctx: int = 1024,
                 max_chars: int = 2000, template: str = "{text}"):
        if pooling not in POOLINGS:
            raise ModelError(f"embedding pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
        if template.count("{text}") != 1:
            raise ModelError(f"embedding template {template!r}: it must contain {{text}} exactly once")
        if threads < 1:
            raise ModelError(f"embedding threads must be at least 1, got {threads}")
        self.model = model
        self.pooling = pooling
        self.threads = int(threads)
        self.n_ctx = int(n_ctx)
        self.max_chars = int(max_chars)
        self.template = template
        self.identity = {"backend": "llama.cpp", "mode": "embedding", "model": model.name, "sha256": model.sha256,
                         "pooling": pooling, "n_ctx": self.n_ctx, "max_chars": self.max_chars}
        if template != "{text}":  # the plain identity stays what it was before templates existed
            self.identity["template"] = template

    def _server(self):
        key = (str(self.model.path), self.pooling, self.threads, self.n_ctx)
        with _LLAMA_LOCK:
            server = _LLAMA_SERVERS.get(key)
            if server is None:
                server = _LLAMA_SERVERS[key] = self._load()
            return server

    def _load(self):
        import secrets

        from aidsafe.models.local._engine import _start_server, _xllamacpp

        xlc = _xllamacpp()
        p = xlc.CommonParams()
        p.model.path = str(self.model.path)
        p.model_alias = {self.model.name}
        p.embedding = True
        p.pooling_type = getattr(xlc.llama_pooling_type, f"LLAMA_POOLING_TYPE_{self.pooling.upper()}")
        p.embd_normalize = 2  # Euclidean (L2)
        # an embedding input must fit one physical batch
        p.n_ctx = p.n_batch = p.n_ubatch = self.n_ctx
        p.n_parallel = 1
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = self.threads
        # llama.cpp always opens an HTTP listener: keep it on an ephemeral
        # loopback port behind a random key, so it is inert.
        p.hostnames = ["127.0.0.1"]
        p.port = 0
        p.api_keys = [secrets.token_urlsafe(32)]
        p.n_threads_http = 1
        p.fit_params = False
        p.warmup = False
        p.ui = False
        p.verbosity = 0
        return _start_server(p, self.model)

    def _request(self, server, texts: list[str]) -> list[list[float]] | str:
        result = server.handle_embeddings({"input": texts})
        if isinstance(result, dict) and isinstance(result.get("data"), list) and len(result["data"]) == len(texts):
            ordered = sorted(result["data"], key=lambda d: d.get("index", 0))
            return [d["embedding"] for d in ordered]
        err = result.get("error", result) if isinstance(result, dict) else result
        return str(err.get("message", err) if isinstance(err, dict) else err)

    def _one(self, server, text: str) -> list[float]:
        while True:
            got = self._request(server, [text])
            if not isinstance(got, str):
                return got[0]
            if "too large" not in got or len(text) < 2:
                raise ModelError(f"llama.cpp could not embed a text with {self.model.name}: {got}")
            text = text[: len(text) // 2]

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text, in batches of :attr:`BATCH`."""
        server = self._server()
        out: list[list[float]] = []
        for start in range(0, len(texts), self.BATCH):
            # an empty input is refused by llama.cpp: embed a space instead
            batch = [self.template.replace("{text}", t[: self.max_chars]) or " "
                     for t in texts[start:start + self.BATCH]]
            got = self._request(server, batch)
            vectors = [self._one(server, t) for t in batch] if isinstance(got, str) else got
            out += [_finish(v) for v in vectors]
        return out

    def __repr__(self) -> str:
        return f"LlamaCppEmbedder({self.model.name}, pooling={self.pooling})"


# --------------------------------------------------------------------------
# remote: dspy.Embedder over LiteLLM
# --------------------------------------------------------------------------


class RemoteEmbedder:
    """``dspy.Embedder(model, api_base=..., api_key=...)``: a hosted
    embedding model or an OpenAI-compatible ``/embeddings`` server. DSPy's own
    cache is off (the :class:`CachedEmbedder` is the one cache); the key is
    held only for the requests, never in the identity, a repr or a log."""

    def __init__(self, model: str, *, api_base: str | None = None, api_key: str | None = None,
                 timeout: float | None = None, batch_size: int = 64,
                 client: Callable[[list[str]], Any] | None = None):
        from aidsafe.models._engine import DEFAULT_TIMEOUT, endpoint_from_env

        # LiteLLM would fetch its cost map from the network on import.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        self.model = model
        self.identity = {"backend": "remote", "mode": "embedding", "model": model,
                         "api_base": api_base or endpoint_from_env(model) or "(provider default)"}
        kwargs: dict[str, Any] = {"timeout": timeout or DEFAULT_TIMEOUT}
        if api_base:
            kwargs["api_base"] = api_base
        if api_key:
            kwargs["api_key"] = api_key
        elif api_base:
            kwargs["api_key"] = "not-needed"  # local servers accept any key
        import dspy

        self._embedder = dspy.Embedder(client or model, batch_size=batch_size, caching=False,
                                       **({} if client else kwargs))

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text."""
        if not texts:
            return []
        try:
            vectors = self._embedder(list(texts))
        except Exception as exc:
            from aidsafe._util.redact import redact

            raise ModelError(f"embedding model {self.model} failed: {redact(str(exc))}") from None
        return [_finish(v) for v in vectors]

    def __repr__(self) -> str:
        return f"RemoteEmbedder({self.model}, api_base={self.identity['api_base']})"


# --------------------------------------------------------------------------
# the cache and the factory
# --------------------------------------------------------------------------


class CachedEmbedder:
    """``inner`` behind the content-addressed cache: each text is embedded
    once per embedder identity, across runs and processes. ``hits`` and
    ``misses`` count texts looked up."""

    def __init__(self, inner: Embedder, cache: Cache):
        self.inner = inner
        self.cache = cache
        self.identity = dict(inner.identity)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Cached vectors; the missing ones embedded by ``inner`` in one call."""
        keys = [embedding_key(self.identity, t) for t in texts]
        out: list[list[float] | None] = [self.cache.get_embedding(k) for k in keys]
        missing: dict[str, list[int]] = {}
        for i, vector in enumerate(out):
            if vector is None:
                missing.setdefault(texts[i], []).append(i)
        with self._lock:
            self.hits += len(texts) - sum(len(v) for v in missing.values())
            self.misses += sum(len(v) for v in missing.values())
        if missing:
            todo = list(missing)
            vectors = self.inner.embed(todo)
            if len(vectors) != len(todo):
                raise ModelError(f"embedder {self.identity.get('model', self.identity)} returned {len(vectors)} "
                                 f"vectors for {len(todo)} texts")
            for text, vector in zip(todo, vectors):
                vector = _finish(vector)
                self.cache.put_embedding(keys[missing[text][0]], vector)
                for i in missing[text]:
                    out[i] = vector
        return out  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r})"


def build_embedder(spec: ModelSpec | str, cache: Cache | None = None, *, pooling: str = "last",
                   threads: int | None = None, template: str = "{text}") -> Embedder:
    """The embedder a model spec (or model string) names, cached in
    ``cache`` when one is given.

    ``"lexical"`` is :class:`LexicalEmbedder`; ``local:NAME`` the local model
    in embedding mode with ``pooling`` and ``threads`` (default: the spec's,
    else 1) and ``template``; ``fake:NAME`` (the scripted test model) the
    lexical embedder, and so does ``mock`` (``aidsafe run --dry-run``); any other string a :class:`RemoteEmbedder` reaching the spec's
    ``api_base`` with the key from ``$api_key_env``.
    """
    from aidsafe.config._specs import ModelSpec

    if isinstance(spec, str):
        spec = ModelSpec(name="embedder", model=spec)
    model = spec.model.strip()
    embedder: Embedder
    if model == "lexical":
        embedder = LexicalEmbedder()
    elif model.startswith("local:"):
        from aidsafe._util.paths import weights_dir
        from aidsafe.models.local._weights import resolve_local

        local = resolve_local(model.split(":", 1)[1], weights_dir())
        embedder = LlamaCppEmbedder(local, pooling=pooling, threads=threads or spec.threads or 1, template=template)
    elif model.startswith("fake:") or model == "mock":
        # a recipe run on the scripted fake model (`--model embed=fake:test`, tests; `--dry-run`) embeds lexically
        embedder = LexicalEmbedder()
    else:
        register_secret_env(spec.api_key_env)
        key = None
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise ModelError(f"embedding model {spec.name!r} ({model}) reads its API key from "
                                 f"${spec.api_key_env}, which is not set; export {spec.api_key_env}=... first")
        embedder = RemoteEmbedder(model, api_base=spec.api_base, api_key=key, timeout=spec.timeout)
    return CachedEmbedder(embedder, cache) if cache is not None else embedder
