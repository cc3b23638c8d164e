"""The content-addressed cache: one source of truth for LM answers, stage
results and text embeddings, on diskcache (SQLite underneath, so several
processes can share a directory).

Values are stored as JSON text, never pickles: a cache directory may be shared
and must not be able to execute code when read.

A cache is never a reason for a record to fail:

* a value that cannot be decoded or has the wrong shape (a stage result missing
  a key, say) is dropped and recomputed;
* a damaged SQLite file ("database disk image is malformed", "file is not a
  database") is moved aside whole, its section folder renamed
  ``<section>.corrupt-<timestamp>`` with one warning line naming it, and a new
  one is started; the run goes on;
* a directory that cannot be written (read-only, not a folder, disk full)
  gives one warning line and the run goes on without the cache. The
  maintenance commands (:meth:`Cache.stats`, :meth:`Cache.clear`) raise a
  :class:`CacheUnavailable` (a user error) instead.
"""

from __future__ import annotations

import array
import base64
import errno
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from aidsafe._util.atomic import atomic_write
from aidsafe._util.errors import UserError

T = TypeVar("T")

CACHE_FORMAT = 1
_SECTIONS = ("calls", "stages", "index", "embeddings")


@dataclass
class CacheCounters:
    call_hits: int = 0
    call_misses: int = 0
    stage_hits: int = 0
    stage_misses: int = 0
    dropped_corrupt: int = 0


class CacheUnavailable(UserError):
    """The cache directory cannot be used (not writable, not a folder)."""


class Cache:
    """LM-call and stage-result cache under ``directory``.

    ``enabled=False`` (``--no-cache``) makes every lookup miss and stores nothing.
    A directory that turns out unusable has the same effect, after one warning
    line (``unavailable`` then says why).

    ``write_behind=True`` (what a run uses) hands writes to one writer thread
    that stores whatever is waiting in one SQLite transaction, so the workers
    neither wait for nor contend over the database's write lock. Reads see
    writes still waiting; :meth:`flush` (and :meth:`close`, :meth:`stats`,
    :meth:`clear`) wait until everything is stored. A process killed outright
    loses only the writes of its last moments: they are recomputed on rerun.
    """

    def __init__(self, directory: str | Path, enabled: bool = True, write_behind: bool = False):
        self.directory = Path(directory)
        self.enabled = enabled
        self.unavailable: str | None = None
        self.counters = CacheCounters()
        self._lock = threading.RLock()
        self.write_behind = write_behind
        # (section, key) -> (payload, tag): written, not yet stored
        self._pending: dict[tuple[str, str], tuple[str, str | None]] = {}
        self._pending_changed = threading.Condition(threading.Lock())
        self._writer: threading.Thread | None = None
        self._writing = 0  # entries the writer has taken and not yet stored
        self._sections: dict[str, diskcache.Cache] = {}
        # the inode of each section's SQLite file as opened: only that file is
        # ever moved aside (another process may already have replaced it)
        self._opened: dict[str, int | None] = {}
        self._generations: dict[str, int] = {}  # how often each section was moved aside
        self._warned_bad = False  # a bad entry was reported (once per process)

    def _section(self, name: str) -> diskcache.Cache:
        with self._lock:
            if name not in self._sections:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._opened[name] = _inode(self.directory / name / "cache.db")
                # A long timeout: several processes may write at once.
                self._sections[name] = diskcache.Cache(str(self.directory / name), timeout=60,
                                                       size_limit=2**40, eviction_policy="none")
            return self._sections[name]

    def close(self) -> None:
        self.flush()
        with self._lock:
            for section in self._sections.values():
                section.close()
            self._sections.clear()

    # -- write-behind -------------------------------------------------------
    def flush(self) -> None:
        """Wait until every write handed to the writer thread is stored (or
        dropped, if the cache became unusable meanwhile)."""
        with self._pending_changed:
            while (self._pending or self._writing) and self._writer is not None and self._writer.is_alive():
                self._pending_changed.wait(0.5)

    def _queue(self, section: str, key: str, payload: str, tag: str | None) -> None:
        with self._pending_changed:
            self._pending[(section, key)] = (payload, tag)
            if self._writer is None or not self._writer.is_alive():
                # daemon: a crashed or interrupted run never hangs at exit;
                # the run's `close` flushes before it returns
                self._writer = threading.Thread(target=self._write_loop, name="aidsafe-cache-writer", daemon=True)
                self._writer.start()
            self._pending_changed.notify_all()

    def _pending_value(self, section: str, key: str) -> str | None:
        with self._pending_changed:
            entry = self._pending.get((section, key))
        return entry[0] if entry is not None else None

    def _unqueue(self, section: str, key: str) -> None:
        with self._pending_changed:
            self._pending.pop((section, key), None)

    def _write_loop(self) -> None:
        while True:
            with self._pending_changed:
                while not self._pending:
                    if not self._pending_changed.wait(5.0) and not self._pending:
                        self._writer = None  # idle: a later write starts a new one
                        self._pending_changed.notify_all()
                        return
                batch = dict(self._pending)
                self._pending.clear()
                self._writing = len(batch)
            try:
                by_section: dict[str, list[tuple[str, str, str | None]]] = {}
                for (section, key), (payload, tag) in batch.items():
                    by_section.setdefault(section, []).append((key, payload, tag))
                for section, items in by_section.items():
                    if self.enabled:
                        self._guarded(section, lambda store, items=items: _store_all(store, items), False, retry=True)
            finally:
                with self._pending_changed:
                    self._writing = 0
                    self._pending_changed.notify_all()

    # -- faults -------------------------------------------------------------
    def _guarded(self, section: str, action: Callable[[diskcache.Cache], T], default: T,
                 retry: bool = False, strict: bool = False) -> T:
        """``action(store)``; a fault of the cache gives ``default`` instead of
        an exception. A damaged file is moved aside (``retry`` then repeats the
        action on the new one); an unusable directory disables the cache, or
        with ``strict`` raises :class:`CacheUnavailable`."""
        for attempt in range(2):
            generation = self._generations.get(section, 0)
            try:
                return action(self._section(section))
            except Exception as exc:  # noqa: BLE001 - sorted below; a bug in `action` re-raises
                fault = _fault(exc)
                if fault == "damaged":
                    self._quarantine(section, generation, exc)
                    if retry and attempt == 0:
                        continue
                    return default
                if fault == "unusable":
                    if strict:
                        raise CacheUnavailable(_unusable_message(self.directory, exc)) from None
                    self._disable(exc)
                    return default
                if fault == "miss":  # locked past the timeout, say: a miss, not a failure
                    return default
                raise
        return default

    def _quarantine(self, section: str, generation: int, exc: Exception) -> None:
        """Move the damaged section folder aside and forget it, so the next
        access starts a new one. One warning line names where it went.
        ``generation`` is the section's as the failing access found it."""
        with self._lock:
            if self._generations.get(section, 0) != generation:
                return  # another thread already did it
            self._generations[section] = generation + 1
            store = self._sections.pop(section, None)
            if store is not None:
                try:
                    store.close()
                except Exception:  # noqa: BLE001 - closing a damaged file may fail too
                    pass
            folder = self.directory / section
            seen = self._opened.pop(section, None)
            if seen is not None and _inode(folder / "cache.db") != seen:
                return  # another process (or thread) moved it aside and started a new one
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for n in range(1, 100):
                target = folder.with_name(f"{section}.corrupt-{stamp}" + (f"-{n}" if n > 1 else ""))
                try:
                    if not target.exists():  # rename would replace an empty folder
                        folder.rename(target)
                        break
                except FileNotFoundError:
                    return  # another process moved it first
                except OSError as move_error:
                    if move_error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        self._disable(move_error)
                        return
            else:
                return
            self.counters.dropped_corrupt += 1
            _warn(f"cache file {folder / 'cache.db'} is damaged ({exc}); moved it aside to {target} "
                  f"and started a new one (delete the old one when you no longer need it)")

    def _disable(self, exc: Exception) -> None:
        with self._lock:
            if self.unavailable is not None:
                return
            self.unavailable = str(exc)
            self.enabled = False
            self._sections.clear()
        _warn(f"{_unusable_message(self.directory, exc)}; running without the cache")

    # -- raw access -------------------------------------------------------
    def _get(self, section: str, key: str, shape: Callable[[dict], bool] | None = None) -> dict | None:
        if not self.enabled:
            return None
        raw = self._pending_value(section, key) if self.write_behind else None
        if raw is None:
            raw = self._guarded(section, lambda store: store.get(key), None)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = None
        if (isinstance(value, dict) and value.get("format") == CACHE_FORMAT
                and (shape is None or shape(value))):
            return value
        # undecodable, from another format, or missing what its reader needs
        with self._lock:
            self.counters.dropped_corrupt += 1
        self._delete(section, key)
        return None

    def _put(self, section: str, key: str, value: dict, tag: str | None = None) -> None:
        if not self.enabled:
            return
        payload = json.dumps(dict(value, format=CACHE_FORMAT, created=time.time()), ensure_ascii=False)
        try:
            payload.encode("utf-8")
        except UnicodeEncodeError:
            return  # a lone surrogate (a hostile answer) cannot be stored: its record fails, nothing is cached
        if self.write_behind:
            self._queue(section, key, payload, tag)
        else:
            self._guarded(section, lambda store: store.set(key, payload, tag=tag), False, retry=True)

    def _delete(self, section: str, key: str) -> None:
        if self.write_behind:
            # a write of this key may be in the writer's batch already (taken
            # off `_pending`, not stored yet): let it land, then delete
            self.flush()
        self._unqueue(section, key)
        self._guarded(section, lambda store: store.delete(key), False)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    # -- LM calls ---------------------------------------------------------
    def get_call(self, key: str) -> dict | None:
        """The stored answer for call ``key`` (``{"response": {...}, ...}``), or None."""
        value = self._get("calls", key, _is_call)
        self._count("call_hits" if value is not None else "call_misses")
        return value

    def drop_call(self, key: str, why: str | None = None) -> None:
        """Forget call ``key``: its answer could not be read back (``why``:
        it failed its check, said in one warning per process)."""
        self._reject("calls", key, why)

    def drop_stage(self, key: str, why: str) -> None:
        """Forget stage result ``key``: a field has the wrong type for what
        the stage declares (one warning per process); it is recomputed."""
        self._reject("stages", key, why)

    def _reject(self, section: str, key: str, why: str | None) -> None:
        with self._lock:
            self.counters.dropped_corrupt += 1
            first = why is not None and not self._warned_bad
            self._warned_bad = self._warned_bad or why is not None
        if first:
            _warn(f"cache {self.directory}: dropped an entry that failed its check ({why}); it is recomputed "
                  "(later ones are dropped without a warning; `aidsafe cache stats` counts them)")
        if self.enabled:
            self._delete(section, key)

    def put_call(self, key: str, value: dict) -> None:
        self._put("calls", key, value)

    # -- stage results ----------------------------------------------------
    def get_stage(self, key: str, count: bool = True) -> dict | None:
        """The stored result of stage ``key`` (``updates``, ``filtered``,
        ``seconds``, ``usage``), or None; an entry missing any is a miss."""
        value = self._get("stages", key, _is_stage)
        if count:
            self._count("stage_hits" if value is not None else "stage_misses")
        return value

    def count_stage_hits(self, n: int) -> None:
        """Count ``n`` stage hits read with ``count=False``."""
        with self._lock:
            self.counters.stage_hits += n

    def put_stage(self, key: str, value: dict, stage_id: str) -> None:
        self._put("stages", key, value, tag=f"stage:{stage_id}")

    # -- embeddings ---------------------------------------------------------
    def get_embedding(self, key: str) -> list[float] | None:
        """The stored vector for embedding ``key`` (float32 values), or None."""
        value = self._get("embeddings", key, _is_embedding)
        return _unpack_f32(value["f32"]) if value is not None else None

    def put_embedding(self, key: str, vector: list[float]) -> None:
        """Store ``vector`` under ``key``, as float32 (what :meth:`get_embedding` returns)."""
        self._put("embeddings", key, {"dim": len(vector), "f32": _pack_f32(vector)})

    # -- explain index: what a record's stage key was made of --------------
    def put_explain(self, recipe: str, record_id: str, stage_id: str, components: dict) -> None:
        self._put("index", _explain_key(recipe, record_id, stage_id), {"components": components},
                  tag=f"stage:{stage_id}")

    def get_explain(self, recipe: str, record_id: str, stage_id: str) -> dict | None:
        value = self._get("index", _explain_key(recipe, record_id, stage_id),
                          lambda v: isinstance(v.get("components"), dict))
        return value["components"] if value else None

    # -- maintenance --------------------------------------------------------
    def stats(self) -> dict:
        """Entries and bytes per section, and the last run's hit counters.
        Raises :class:`CacheUnavailable` when the directory cannot be used."""
        self.flush()
        out: dict[str, Any] = {"directory": str(self.directory), "sections": {}}
        for name in _SECTIONS:
            empty = {"entries": 0, "bytes": 0}
            if (self.directory / name).exists():
                out["sections"][name] = self._guarded(
                    name, lambda store: {"entries": len(store), "bytes": store.volume()}, empty, strict=True)
            else:
                out["sections"][name] = empty
        out["last_run"] = self.last_run()
        return out

    def clear(self, stage: str | None = None, older_than: float | None = None) -> int:
        """Remove entries: all, one stage's (``stage``), and/or those older than
        ``older_than`` seconds. Returns how many were removed. Raises
        :class:`CacheUnavailable` when the directory cannot be used."""
        self.flush()
        cutoff = time.time() - older_than if older_than is not None else None

        def clear_section(store: diskcache.Cache) -> int:
            if stage is None and cutoff is None:
                return store.clear()
            removed = 0
            for key in list(store.iterkeys()):
                raw, tag = store.get(key, tag=True)
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

        sections = ("stages", "index") if stage else _SECTIONS
        # a damaged section is moved aside whole, which clears it too
        return sum(self._guarded(name, clear_section, 0, strict=True)
                   for name in sections if (self.directory / name).exists())

    def save_last_run(self, summary: dict) -> None:
        if not self.enabled:
            return
        data = dict(summary, counters=asdict(self.counters))
        try:
            # Several processes may finish at once: each writes a whole file.
            with atomic_write(self.directory / "last_run.json") as handle:
                json.dump(data, handle, indent=2)
        except OSError as exc:
            self._disable(exc)

    def last_run(self) -> dict | None:
        try:
            return json.loads((self.directory / "last_run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def _store_all(store: diskcache.Cache, items: list[tuple[str, str, str | None]]) -> None:
    """Store ``(key, payload, tag)`` items in one transaction."""
    with store.transact(retry=True):
        for key, payload, tag in items:
            store.set(key, payload, tag=tag, retry=True)


def _explain_key(recipe: str, record_id: str, stage_id: str) -> str:
    return json.dumps([recipe, str(record_id), stage_id])


# -- faults and shapes ---------------------------------------------------------

_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_UNUSABLE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR", "SQLITE_FULL")


def _fault(exc: Exception) -> str | None:
    """What kind of cache fault ``exc`` is: ``"damaged"`` (the file),
    ``"unusable"`` (the directory), ``"miss"`` (anything else SQLite or
    diskcache reports, a lock held past the timeout say), or None (a bug)."""
    if isinstance(exc, OSError):
        return "unusable"
    if isinstance(exc, diskcache.Timeout):
        return "miss"
    if not isinstance(exc, sqlite3.Error):
        return None
    # sqlite_errorname is Python 3.11+; the messages are SQLite's own, stable
    name, text = getattr(exc, "sqlite_errorname", "") or "", str(exc).lower()
    if name.startswith(_DAMAGED) or "malformed" in text or "not a database" in text:
        return "damaged"
    if name.startswith(_UNUSABLE) or any(t in text for t in ("readonly", "unable to open", "disk i/o", "is full")):
        return "unusable"
    return "miss"


def _unusable_message(directory: Path, exc: Exception) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if directory.is_dir() and not os.access(directory, os.W_OK):
        reason = f"the folder is read-only: {reason}"  # SQLite only says "unable to open database file"
    return (f"cache directory {directory} cannot be used ({reason}): make it writable, or point "
            f"--cache-dir / AIDSAFE_CACHE_DIR at another folder (--no-cache runs without a cache)")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _pack_f32(vector: list[float]) -> str:
    """``vector`` as base64 of little-endian float32: a quarter of its JSON size."""
    values = array.array("f", vector)
    if sys.byteorder != "little":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def _unpack_f32(text: str) -> list[float]:
    values = array.array("f", base64.b64decode(text))
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def _is_embedding(value: dict) -> bool:
    text, dim = value.get("f32"), value.get("dim")
    if not isinstance(text, str) or not isinstance(dim, int):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == 4 * dim
    except ValueError:
        return False


def _is_call(value: dict) -> bool:
    return isinstance(value.get("response"), dict)


def _is_stage(value: dict) -> bool:
    """What the stage runner reads back: updates, seconds, usage per model."""
    usage = value.get("usage")
    return (isinstance(value.get("updates"), dict)
            and isinstance(value.get("seconds"), (int, float))
            and isinstance(value.get("filtered"), (str, type(None)))
            and isinstance(usage, dict)
            and all(isinstance(u, dict) and isinstance(u.get("input_tokens"), int)
                    and isinstance(u.get("output_tokens"), int) for u in usage.values()))
