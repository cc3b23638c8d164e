"""The content-addressed cache: one source of truth for LM answers and stage
results, on diskcache (SQLite underneath, so several processes can share a
directory).

Values are stored as JSON text, never pickles: a cache directory may be shared
and must not be able to execute code when read. A value that cannot be decoded
or has the wrong shape is dropped and recomputed.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache

from aidsafe._util.atomic import atomic_write

CACHE_FORMAT = 1
_SECTIONS = ("calls", "stages", "index")


@dataclass
class CacheCounters:
    call_hits: int = 0
    call_misses: int = 0
    stage_hits: int = 0
    stage_misses: int = 0
    dropped_corrupt: int = 0


class Cache:
    """LM-call and stage-result cache under ``directory``.

    ``enabled=False`` (``--no-cache``) makes every lookup miss and stores nothing.
    """

    def __init__(self, directory: str | Path, enabled: bool = True):
        self.directory = Path(directory)
        self.enabled = enabled
        self.counters = CacheCounters()
        self._lock = threading.Lock()
        self._sections: dict[str, diskcache.Cache] = {}

    def _section(self, name: str) -> diskcache.Cache:
        with self._lock:
            if name not in self._sections:
                self.directory.mkdir(parents=True, exist_ok=True)
                # A long timeout: several processes may write at once.
                self._sections[name] = diskcache.Cache(str(self.directory / name), timeout=60,
                                                       size_limit=2**40, eviction_policy="none")
            return self._sections[name]

    def close(self) -> None:
        with self._lock:
            for section in self._sections.values():
                section.close()
            self._sections.clear()

    # -- raw access -------------------------------------------------------
    def _get(self, section: str, key: str) -> dict | None:
        if not self.enabled:
            return None
        store = self._section(section)
        try:
            raw = store.get(key)
        except Exception:  # a torn or foreign entry: drop it, recompute
            raw = "\0corrupt"
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            if not isinstance(value, dict) or value.get("format") != CACHE_FORMAT:
                raise ValueError("wrong shape")
            return value
        except (TypeError, ValueError):
            with self._lock:
                self.counters.dropped_corrupt += 1
            store.delete(key)
            return None

    def _put(self, section: str, key: str, value: dict, tag: str | None = None) -> None:
        if not self.enabled:
            return
        payload = dict(value, format=CACHE_FORMAT, created=time.time())
        self._section(section).set(key, json.dumps(payload, ensure_ascii=False), tag=tag)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    # -- LM calls ---------------------------------------------------------
    def get_call(self, key: str) -> dict | None:
        value = self._get("calls", key)
        self._count("call_hits" if value is not None else "call_misses")
        return value

    def put_call(self, key: str, value: dict) -> None:
        self._put("calls", key, value)

    # -- stage results ----------------------------------------------------
    def get_stage(self, key: str, count: bool = True) -> dict | None:
        value = self._get("stages", key)
        if count:
            self._count("stage_hits" if value is not None else "stage_misses")
        return value

    def put_stage(self, key: str, value: dict, stage_id: str) -> None:
        self._put("stages", key, value, tag=f"stage:{stage_id}")

    # -- explain index: what a record's stage key was made of --------------
    def put_explain(self, recipe: str, record_id: str, stage_id: str, components: dict) -> None:
        self._put("index", _explain_key(recipe, record_id, stage_id), {"components": components},
                  tag=f"stage:{stage_id}")

    def get_explain(self, recipe: str, record_id: str, stage_id: str) -> dict | None:
        value = self._get("index", _explain_key(recipe, record_id, stage_id))
        return value["components"] if value else None

    # -- maintenance --------------------------------------------------------
    def stats(self) -> dict:
        """Entries and bytes per section, and the last run's hit counters."""
        out: dict[str, Any] = {"directory": str(self.directory), "sections": {}}
        for name in _SECTIONS:
            if (self.directory / name).exists():
                store = self._section(name)
                out["sections"][name] = {"entries": len(store), "bytes": store.volume()}
            else:
                out["sections"][name] = {"entries": 0, "bytes": 0}
        out["last_run"] = self.last_run()
        return out

    def clear(self, stage: str | None = None, older_than: float | None = None) -> int:
        """Remove entries: all, one stage's (``stage``), and/or those older than
        ``older_than`` seconds. Returns how many were removed."""
        removed = 0
        cutoff = time.time() - older_than if older_than is not None else None
        sections = ("stages", "index") if stage else _SECTIONS
        for name in sections:
            if not (self.directory / name).exists():
                continue
            store = self._section(name)
            if stage is None and cutoff is None:
                removed += store.clear()
                continue
            for key in list(store.iterkeys()):
                try:
                    raw, tag = store.get(key, tag=True)
                except Exception:
                    raw, tag = None, None
                if stage is not None and tag != f"stage:{stage}":
                    continue
                if cutoff is not None:
                    try:
                        created = json.loads(raw).get("created", 0)
                    except (TypeError, ValueError, AttributeError):
                        created = 0
                    if created >= cutoff:
                        continue
                removed += bool(store.delete(key))
        return removed

    def save_last_run(self, summary: dict) -> None:
        if not self.enabled:
            return
        data = dict(summary, counters=asdict(self.counters))
        # Several processes may finish at once: each writes a whole file.
        with atomic_write(self.directory / "last_run.json") as handle:
            json.dump(data, handle, indent=2)

    def last_run(self) -> dict | None:
        try:
            return json.loads((self.directory / "last_run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def _explain_key(recipe: str, record_id: str, stage_id: str) -> str:
    return json.dumps([recipe, str(record_id), stage_id])
