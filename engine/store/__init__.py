"""The content-addressed disk cache (diskcache): LM calls and stage results."""

from aidsafe.store._cache import Cache, CacheUnavailable

__all__ = ["Cache", "CacheUnavailable"]
