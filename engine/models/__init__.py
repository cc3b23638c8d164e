"""Models: the caching engine every LM call goes through (call cache, limits,
usage), remote backends, and the embedded llama.cpp model (``models.local``)."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["CachingEngine", "ModelHandle", "ModelUsage", "UsageMeter", "build_models", "inspection_models",
           "metering", "parse_override", "register_engine", "sample_index", "unregister_engine"]

__getattr__, __dir__ = lazy_exports(__name__, {
    **{name: "._engine" for name in ("CachingEngine", "ModelHandle", "ModelUsage", "UsageMeter", "build_models",
                                     "metering", "parse_override", "register_engine", "sample_index",
                                     "unregister_engine")},
    "inspection_models": "._inspect",
})
