"""Human review labels, kept in a sidecar file next to the run.

``out.jsonl`` gets ``out.review.jsonl``, and so does its scored twin
``out.scored.jsonl`` (``aidsafe eval`` adds scores, not new records): a label
given on either counts for both. One JSON object per reviewed record,
``{"id", "label", "note", "rev", "updated", "hash"}``, where ``label`` is
``accept``, ``reject`` or ``needs-edit`` and ``hash`` is
:func:`record_hash` of the record as the reviewer saw it (prompt, CoT,
response, preference pair; not scores or provenance). A label whose record
has changed since (a rerun wrote another answer) is *stale*: shown as such,
never applied. A ``needs-edit`` label may carry ``edit`` (the reviewer's
``response`` and ``cot``) and ``original`` (the record's, kept beside it).
The run itself is never modified.

Every save re-reads the sidecar, applies one change and replaces the file
whole through :func:`aidsafe._util.atomic.atomic_write`, under a lock, so
two browser tabs (or two requests at once) never lose each other's labels
and a reader never sees half a file. ``rev`` counts the changes of one
record: a save that names the ``rev`` it started from is refused with the
current label when another tab changed the record in between.

``aidsafe export --reviewed`` reads the sidecar through :func:`apply_reviews`.
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
from aidsafe._util.hashing import sha256_of

LABELS = ("accept", "reject", "needs-edit")
STALE = "stale"  # a label whose record changed since it was given (shown, never applied)
REJECTED_REASON = "rejected in review"
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_MAX_EDIT = 200_000  # characters of edited text per record
_TWIN_SUFFIXES = (".scored.jsonl", ".jsonl")


def sidecar_path(run: str | Path) -> Path:
    """``out.jsonl`` and ``out.scored.jsonl`` -> ``out.review.jsonl`` (beside the run)."""
    run = Path(run)
    name = run.name
    stem = next((name[:-len(s)] for s in _TWIN_SUFFIXES if name.endswith(s)), name)
    return run.with_name(stem + ".review.jsonl")


def _legacy_sidecar(run: Path) -> Path | None:
    """Where a scored file's labels went before twins shared one sidecar."""
    return run.with_name(run.name[:-len(".jsonl")] + ".review.jsonl") if run.name.endswith(".scored.jsonl") \
        else None


def record_hash(record: dict) -> str:
    """What a label was given to: the prompt, CoT, response and preference
    pair of ``record`` (a scored twin, which adds scores, hashes the same)."""
    pref = record.get("preference") if isinstance(record.get("preference"), dict) else {}
    sides = {side: {k: (pref.get(side) or {}).get(k) for k in ("cot", "response")}
             for side in ("chosen", "rejected") if isinstance(pref.get(side), dict)}
    return sha256_of({"prompt": record.get("prompt"), "cot": record.get("cot"), "response": record.get("response"),
                      "pair": sides})[:16]


def effective_label(entry: dict | None, current_hash: str | None) -> str | None:
    """The label to show and apply: the entry's, or :data:`STALE` when the
    record changed since (entries without a hash, from older versions, apply)."""
    if not entry:
        return None
    if entry.get("hash") and current_hash and entry["hash"] != current_hash:
        return STALE
    return entry.get("label")


class ReviewConflict(UserError):
    """The record's label changed (in another tab) since the page loaded."""

    def __init__(self, current: dict | None):
        self.current = current
        label = (current or {}).get("label") or "no label"
        super().__init__(f"this record was changed in another tab or window (now: {label}); "
                         "reload it and review again")


def check_edit(edit: object) -> dict:
    """A reviewer's edit, ``{"response": text, "cot": [text, ...]}``, checked."""
    if not isinstance(edit, dict) or not isinstance(edit.get("response"), str) \
            or not isinstance(edit.get("cot"), list) or not all(isinstance(t, str) for t in edit["cot"]):
        raise UserError('edit must be {"response": text, "cot": [text, ...]}')
    if len(edit["response"]) + sum(map(len, edit["cot"])) > _MAX_EDIT:
        raise UserError(f"edit too long (over {_MAX_EDIT} characters)")
    return {"response": edit["response"], "cot": [t for t in edit["cot"] if t.strip()]}


@dataclass(frozen=True)
class Review:
    """One change: a label (or None to clear it) and a note for record
    ``id``; ``hash`` is :func:`record_hash` of the record reviewed; ``edit``
    the reviewer's text (needs-edit only)."""

    id: str
    label: str | None
    note: str = ""
    hash: str | None = None
    edit: dict | None = None

    def check(self) -> None:
        if self.label is not None and self.label not in LABELS:
            raise UserError(f"review label must be one of {', '.join(LABELS)} (or null to clear), "
                            f"found {self.label!r}")
        if self.edit is not None and self.label != "needs-edit":
            raise UserError("an edit goes with the label needs-edit")


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


def _read_run_reviews(run: Path) -> dict[str, dict]:
    """The labels of ``run``: its sidecar, else (read-only) a scored file's
    sidecar from before twins shared one."""
    path = sidecar_path(run)
    legacy = _legacy_sidecar(run)
    if not path.is_file() and legacy is not None and legacy.is_file():
        return read_reviews(legacy)
    return read_reviews(path)


class ReviewStore:
    """The review labels of one run, read from and saved to its sidecar."""

    def __init__(self, run: str | Path):
        self.run = Path(run)
        self.path = sidecar_path(run)
        with _LOCKS_GUARD:  # one lock per sidecar, shared by every store of the process
            self._lock = _LOCKS.setdefault(self.path.resolve(), threading.Lock())
        self._cache: tuple[tuple | None, dict[str, dict]] = (None, {})

    def _stamp(self) -> tuple | None:
        stamps = []
        for path in (self.path, _legacy_sidecar(self.run)):
            try:
                stat = path.stat() if path is not None else None
            except OSError:
                stat = None
            stamps.append(None if stat is None else (stat.st_mtime_ns, stat.st_size))
        return None if stamps == [None, None] else tuple(stamps)

    def all(self) -> dict[str, dict]:
        """Every label (re-read when the sidecar changed on disk)."""
        stamp = self._stamp()
        if stamp is None:
            return {}
        if self._cache[0] != stamp:
            self._cache = (stamp, _read_run_reviews(self.run))
        return self._cache[1]

    def get(self, rid: str) -> dict | None:
        """The label of record ``rid``, or None."""
        return self.all().get(rid)

    def save(self, review: Review, base_rev: int | None = None, record: dict | None = None) -> dict | None:
        """Apply one change and write the sidecar atomically. ``base_rev``:
        the ``rev`` the caller saw (0 for none); a different current ``rev``
        raises :class:`ReviewConflict`. ``record`` (the record reviewed) gives
        the hash and, for an edit, the original text kept beside it. Returns
        the new entry (None when cleared)."""
        review.check()
        with self._lock:
            entries = _read_run_reviews(self.run)
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
                digest = review.hash or (record_hash(record) if record is not None else None)
                if digest:
                    entry["hash"] = digest
                if review.edit is not None:
                    entry["edit"] = check_edit(review.edit)
                    original = (current or {}).get("original")
                    if original is None and record is not None:
                        original = {"response": record.get("response"), "cot": record.get("cot")}
                    if original is not None:
                        entry["original"] = original
                elif review.label == "needs-edit" and current and current.get("edit") is not None \
                        and current.get("hash") == entry.get("hash"):
                    # a new note on an edited record keeps the edit
                    entry["edit"], entry["original"] = current["edit"], current.get("original")
                entries[review.id] = entry
            with atomic_write(self.path) as handle:
                for item in entries.values():
                    handle.write(json.dumps(item, ensure_ascii=False) + "\n")
            self._cache = (None, {})
        return entry


@dataclass
class ReviewTally:
    """What :func:`apply_reviews` did: records left out, edited, and labels
    not applied because their record changed since they were given."""

    file: str
    rejected: int = 0
    edited: int = 0
    stale: int = 0

    def to_dict(self) -> dict:
        return {"file": self.file, "rejected": self.rejected, "edited": self.edited, "stale": self.stale}


def apply_edit(record: dict, edit: dict) -> dict:
    """``record`` with a reviewer's ``edit`` as its CoT and response (and as
    the chosen side of a preference pair)."""
    out = dict(record)
    out["response"], out["cot"] = edit["response"], list(edit["cot"])
    pref = out.get("preference")
    if isinstance(pref, dict) and isinstance(pref.get("chosen"), dict):
        out["preference"] = {**pref, "chosen": {**pref["chosen"], "response": edit["response"],
                                                 "cot": list(edit["cot"])}}
    return out


def apply_reviews(records: Iterable[dict], run: str | Path, skipped: Counter,
                  tally: ReviewTally | None = None) -> Iterator[dict]:
    """``records`` of ``run`` as reviewed in ``aidsafe view`` (``aidsafe
    export --reviewed``): rejected records left out (counted in ``skipped``
    under :data:`REJECTED_REASON`), needs-edit records with the reviewer's
    text. A label whose record changed since it was given is not applied
    (counted in ``tally.stale``). The labels of a run and of its scored twin
    are the same file. A missing sidecar is a :class:`UserError`."""
    run = Path(run)
    path = sidecar_path(run)
    legacy = _legacy_sidecar(run)
    if not path.is_file() and not (legacy is not None and legacy.is_file()):
        raise UserError(f"--reviewed: no review file {str(path)!r} next to {str(run)!r}; review the run with "
                        f"`aidsafe view {run}` first, or leave out --reviewed")
    entries = _read_run_reviews(run)
    tally = tally if tally is not None else ReviewTally(path.name)

    def reviewed() -> Iterator[dict]:
        for record in records:
            entry = entries.get(str(record.get("id")))
            label = effective_label(entry, record_hash(record) if entry else None)
            if label == STALE:
                tally.stale += 1
            elif label == "reject":
                tally.rejected += 1
                skipped[REJECTED_REASON] += 1
                continue
            elif label == "needs-edit" and entry.get("edit") is not None:
                tally.edited += 1
                record = apply_edit(record, entry["edit"])
            yield record

    return reviewed()


__all__ = ["LABELS", "REJECTED_REASON", "STALE", "Review", "ReviewConflict", "ReviewStore", "ReviewTally",
           "apply_edit", "apply_reviews", "check_edit", "effective_label", "read_reviews", "record_hash",
           "sidecar_path"]
