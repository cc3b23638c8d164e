"""Models: the caching engine every LM call goes through (call cache, limits,
usage), remote backends, the embedded llama.cpp model (``models.local``), and
text embedders for nearest-precedent selection (``build_embedder``)."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["CachedEmbedder", "CachingEngine", "Embedder", "LexicalEmbedder", "LlamaCppEmbedder", "ModelHandle",
           "ModelUsage", "RemoteEmbedder", "UsageMeter", "build_embedder", "build_models", "embedding_key",
           "inspection_models", "metering", "parse_override", "register_engine", "sample_index",
           "unregister_engine"]

__getattr__, __dir__ = lazy_exports(__name__, {
    **{name: "._engine" for name in ("CachingEngine", "ModelHandle", "ModelUsage", "UsageMeter", "build_models",
                                     "metering", "parse_override", "register_engine", "sample_index",
                                     "unregister_engine")},
    "inspection_models": "._inspect",
    **{name: "._embed" for name in ("CachedEmbedder", "Embedder", "LexicalEmbedder", "LlamaCppEmbedder",
                                    "RemoteEmbedder", "build_embedder", "embedding_key")},
})
