"""Human review labels, kept in a sidecar file next to the run.

``out.jsonl`` gets ``out.review.jsonl``: one JSON object per reviewed record,
``{"id", "label", "note", "rev", "updated"}``, where ``label`` is ``accept``,
``reject`` or ``needs-edit``. The run itself is never modified.

Every save re-reads the sidecar, applies one change and replaces the file
whole through :func:`aidsafe._util.atomic.atomic_write`, under a lock, so
two browser tabs (or two requests at once) never lose each other's labels
and a reader never sees half a file. ``rev`` counts the changes of one
record: a save that names the ``rev`` it started from is refused with the
current label when another tab changed the record in between.

``aidsafe export --reviewed`` reads the sidecar through :func:`drop_rejected`.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aidsafe._util.atomic import atomic_write
from aidsafe._util.errors import UserError

LABELS = ("accept", "reject", "needs-edit")
REJECTED_REASON = "rejected in review"
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def sidecar_path(run: str | Path) -> Path:
    """``out.jsonl`` -> ``out.review.jsonl`` (beside the run)."""
    run = Path(run)
    stem = run.name[:-len(".jsonl")] if run.name.endswith(".jsonl") else run.name
    return run.with_name(stem + ".review.jsonl")


class ReviewConflict(UserError):
    """The record's label changed (in another tab) since the page loaded."""

    def __init__(self, current: dict | None):
        self.current = current
        label = (current or {}).get("label") or "no label"
        super().__init__(f"this record was changed in another tab or window (now: {label}); "
                         "reload it and review again")


@dataclass(frozen=True)
class Review:
    """One change: a label (or None to clear it) and a note for record ``id``."""

    id: str
    label: str | None
    note: str = ""

    def check(self) -> None:
        if self.label is not None and self.label not in LABELS:
            raise UserError(f"review label must be one of {', '.join(LABELS)} (or null to clear), "
                            f"found {self.label!r}")


def read_reviews(path: str | Path) -> dict[str, dict]:
    """id -> review entry from a sidecar file (empty when there is none). A
    bad line is a :class:`UserError` naming the file and line."""
    path = Path(path)
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise UserError(f"{path}:{number}: not valid JSON ({exc}); the review sidecar is written by "
                                "`aidsafe view`: fix or delete the line") from None
            if not isinstance(entry, dict) or "id" not in entry or entry.get("label") not in LABELS:
                raise UserError(f"{path}:{number}: expected {{\"id\": ..., \"label\": one of {', '.join(LABELS)}}}, "
                                f"found {line.strip()[:120]}")
            out[str(entry["id"])] = entry
    return out


class ReviewStore:
    """The review labels of one run, read from and saved to its sidecar."""

    def __init__(self, run: str | Path):
        self.path = sidecar_path(run)
        with _LOCKS_GUARD:  # one lock per sidecar, shared by every store of the process
            self._lock = _LOCKS.setdefault(self.path.resolve(), threading.Lock())
        self._cache: tuple[tuple[int, int] | None, dict[str, dict]] = (None, {})

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def all(self) -> dict[str, dict]:
        """Every label (re-read when the sidecar changed on disk)."""
        stamp = self._stamp()
        if stamp is None:
            return {}
        if self._cache[0] != stamp:
            self._cache = (stamp, read_reviews(self.path))
        return self._cache[1]

    def get(self, rid: str) -> dict | None:
        """The label of record ``rid``, or None."""
        return self.all().get(rid)

    def save(self, review: Review, base_rev: int | None = None) -> dict | None:
        """Apply one change and write the sidecar atomically. ``base_rev``:
        the ``rev`` the caller saw (0 for none); a different current ``rev``
        raises :class:`ReviewConflict`. Returns the new entry (None when cleared)."""
        review.check()
        with self._lock:
            entries = read_reviews(self.path)
            current = entries.get(review.id)
            if base_rev is not None and (current or {}).get("rev", 0) != base_rev:
                raise ReviewConflict(current)
            if review.label is None:
                entries.pop(review.id, None)
                entry = None
            else:
                entry = {"id": review.id, "label": review.label, "note": review.note[:5000],
                         "rev": (current or {}).get("rev", 0) + 1,
                         "updated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
                entries[review.id] = entry
            with atomic_write(self.path) as handle:
                for item in entries.values():
                    handle.write(json.dumps(item, ensure_ascii=False) + "\n")
            self._cache = (None, {})
        return entry


def drop_rejected(records: Iterable[dict], run: str | Path, skipped: Counter) -> Iterator[dict]:
    """``records`` of ``run`` less those labelled ``reject`` in its sidecar,
    each counted in ``skipped`` under :data:`REJECTED_REASON` (``aidsafe
    export --reviewed``). A missing sidecar is a :class:`UserError`."""
    path = sidecar_path(run)
    if not path.is_file():
        raise UserError(f"--reviewed: no review file {str(path)!r} next to {str(run)!r}; review the run with "
                        f"`aidsafe view {run}` first, or leave out --reviewed")
    rejected = {rid for rid, entry in read_reviews(path).items() if entry.get("label") == "reject"}

    def kept() -> Iterator[dict]:
        for record in records:
            if str(record.get("id")) in rejected:
                skipped[REJECTED_REASON] += 1
                continue
            yield record

    return kept()


__all__ = ["LABELS", "REJECTED_REASON", "Review", "ReviewConflict", "ReviewStore", "drop_rejected", "read_reviews",
           "sidecar_path"]
