"""A byte-offset index of one JSONL run for the viewer.

The file is never loaded whole: a background thread reads it once with the
one record reader (:func:`aidsafe.runtime._records.iter_jsonl_lines`) and
keeps, per record, its byte offset and a few small fields (status, stop
reason, rounds, judge scores, refusal class, a hash of the CoT and
response). A page of the list needs only those; a record page seeks to the
offset and parses one line. The first page is answered as soon as the
records on it are indexed, while the rest of the file is still being read.

A bad line stops the index there: the records before it stay browsable and
the page shows the error (file and line), never a traceback.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aidsafe._util.errors import UserError
from aidsafe.evaluation._refusal import classify_refusal
from aidsafe.runtime._records import iter_jsonl_lines, read_record_at
from aidsafe.view._review import effective_label, record_hash

# Fields the list filters on exactly (the value "none" matches a missing one).
FACETS = ("status", "stop", "rounds", "refusal", "kind", "review")
SORTS = ("position", "id", "status", "stop", "rounds", "refusal", "review")
_SNIPPET = 160


@dataclass(slots=True)
class Row:
    """What the list shows of one record (scores aligned with ``RunIndex.metrics``)."""

    position: int
    offset: int
    number: int
    id: str
    status: str | None
    stop: str | None
    rounds: int | None
    refusal: str | None
    kind: str
    digest: int  # of record_hash (prompt, CoT, response, pair): compare flags differing records without reading them
    snippet: str
    scores: tuple = ()
    chash: str = ""  # record_hash: what a review label was given to

    def review_label(self, review: dict | None) -> str | None:
        """The label of ``review`` for this record ("stale" when the record changed since)."""
        return effective_label(review, self.chash)

    def to_dict(self, metrics: list[str], review: dict | None) -> dict:
        """The row as the JSON API sends it."""
        scores = {m: (self.scores[i] if i < len(self.scores) else None) for i, m in enumerate(metrics)}
        return {"position": self.position, "id": self.id, "status": self.status, "stop": self.stop,
                "rounds": self.rounds, "refusal": self.refusal, "kind": self.kind, "prompt": self.snippet,
                "scores": scores, "review": self.review_label(review),
                "edited": bool(review and review.get("edit") is not None)}


@dataclass
class Page:
    """One page of a (filtered, sorted) list."""

    total: int
    rows: list[dict]
    complete: bool
    indexed: int
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


def summarize(record: dict) -> dict:
    """The small fields of ``record`` the index keeps (also used for tests)."""
    delib = record.get("deliberation") if isinstance(record.get("deliberation"), dict) else {}
    response = record.get("response")
    status = record.get("status")
    refusal = classify_refusal(response) if status == "ok" and isinstance(response, str) else None
    chash = record_hash(record)
    rounds = delib.get("rounds")
    return {
        "id": str(record.get("id")),
        "status": None if status is None else str(status),
        "stop": record.get("stop_reason") or delib.get("stop_reason"),
        "rounds": rounds if isinstance(rounds, int) else None,
        "refusal": refusal,
        "kind": "dpo" if isinstance(record.get("preference"), dict) else "sft",
        "digest": int(chash, 16),
        "snippet": str(record.get("prompt") or "")[:_SNIPPET],
        "scores": record.get("scores") if isinstance(record.get("scores"), dict) else {},
        "chash": chash,
    }


class RunIndex:
    """The index of one JSONL file: built in the background by :meth:`start`,
    queried by :meth:`page`, :meth:`record` and :meth:`search`."""

    def __init__(self, path: str | Path, label: str | None = None):
        self.path = Path(path)
        self.label = label or self.path.name
        self.rows: list[Row] = []
        self.by_id: dict[str, int] = {}
        self.metrics: list[str] = []
        self.error: str | None = None
        self.done = False
        self.duplicates = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._search_cache: tuple[str, set[int]] | None = None
        self._facets: dict[str, dict[str, int]] | None = None

    # ------------------------------------------------------------ building

    def start(self) -> RunIndex:
        """Start reading the file in a daemon thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._build, name=f"index {self.label}", daemon=True)
            self._thread.start()
        return self

    def _build(self) -> None:
        metric_pos: dict[str, int] = {}
        batch: list[Row] = []
        try:
            for line in iter_jsonl_lines(self.path, "run file"):
                info = summarize(line.record)
                for name in info["scores"]:
                    if name not in metric_pos:
                        metric_pos[name] = len(self.metrics)
                        self.metrics.append(name)
                scores = [None] * len(metric_pos)
                for name, value in info["scores"].items():
                    scores[metric_pos[name]] = value if isinstance(value, (int, float)) else None
                rid = info["id"]
                if rid in self.by_id:  # a second record with an id: reachable by position only
                    self.duplicates += 1
                    rid = f"{rid}#line{line.number}"
                row = Row(len(self.rows) + len(batch), line.offset, line.number, rid, info["status"], info["stop"],
                          info["rounds"], info["refusal"], info["kind"], info["digest"], info["snippet"],
                          tuple(scores), info["chash"])
                self.by_id[rid] = row.position
                batch.append(row)
                if len(batch) >= 200 or len(self.rows) < 100:
                    self._publish(batch)
                    batch = []
        except UserError as exc:
            self.error = str(exc)
        except OSError as exc:
            self.error = f"{self.path}: cannot be read ({exc.strerror or exc}); give a JSONL run file"
        finally:
            self._publish(batch, done=True)

    def _publish(self, batch: list[Row], done: bool = False) -> None:
        with self._changed:
            self.rows.extend(batch)
            if done:
                self.done = True
                if not self.rows and self.error is None:
                    self.error = f"{self.path}: holds no records (an empty file)"
            self._changed.notify_all()

    def wait(self, count: int | None = None, timeout: float = 60.0) -> None:
        """Block until ``count`` rows are indexed (all of them when None) or
        the file is read, at most ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self.done or (count is not None and len(self.rows) >= count), timeout)

    # ------------------------------------------------------------ reading

    def contains(self, rid: str) -> bool:
        """Whether the file holds id ``rid``; like :meth:`record`, an id not
        indexed yet waits for the rest of the file before the answer is no."""
        if rid not in self.by_id:
            self.wait()
        return rid in self.by_id

    def record(self, rid: str) -> tuple[Row, dict]:
        """The row and the full record of id ``rid`` (a :class:`UserError`
        when there is no such id)."""
        position = self.by_id.get(rid)
        if position is None:
            self.wait()
            position = self.by_id.get(rid)
        if position is None:
            raise UserError(f"no record with id {rid!r} in {self.label}")
        row = self.rows[position]
        return row, read_record_at(self.path, row.offset, row.number)

    def search(self, query: str) -> set[int]:
        """Positions of records whose prompt, CoT or response contains every
        word of ``query`` (case-insensitive). Reads the file line by line:
        raw lines are tested first, only candidates are parsed."""
        self.wait()
        key = query.strip().lower()
        if self._search_cache and self._search_cache[0] == key:
            return self._search_cache[1]
        words = key.split()
        needles = [w.encode("utf-8") for w in words]
        hits: set[int] = set()
        limit = len(self.rows)
        with open(self.path, "rb") as handle:
            for position, row in enumerate(self.rows[:limit]):
                handle.seek(row.offset)
                raw = handle.readline()
                lower = raw.lower()
                if not all(n in lower for n in needles):
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                text = " ".join([str(record.get("prompt") or ""), _text(record.get("cot")),
                                 str(record.get("response") or "")]).lower()
                if all(w in text for w in words):
                    hits.add(position)
        self._search_cache = (key, hits)
        return hits

    def page(self, offset: int = 0, limit: int = 50, filters: dict[str, str] | None = None, sort: str = "position",
             desc: bool = False, query: str = "", reviews: Callable[[], dict[str, dict]] | None = None) -> Page:
        """A page of the list. Without filters, sort or search only the rows
        up to the page's end need to be indexed, so the first page of a big
        file comes back at once; otherwise the whole file is indexed first."""
        filters = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
        review_map = reviews() if reviews else {}
        plain = not filters and sort == "position" and not desc and not query.strip()
        if plain:
            self.wait(offset + limit)
            rows = self.rows
            # While the file is still being read, total is what is indexed so far (complete=False).
            return Page(len(rows), [r.to_dict(self.metrics, review_map.get(r.id)) for r in rows[offset:offset + limit]],
                        self.done, len(rows), self.facets(review_map))
        self.wait()
        rows = list(self.rows)
        if query.strip():
            hits = self.search(query)
            rows = [r for r in rows if r.position in hits]
        for name, wanted in filters.items():
            getter = self._getter(name, review_map)
            rows = [r for r in rows if _as_text(getter(r)) == wanted]
        getter = self._getter(sort, review_map)
        present = [r for r in rows if getter(r) is not None]
        missing = [r for r in rows if getter(r) is None]
        present.sort(key=lambda r: (_sort_key(getter(r)), r.position), reverse=desc)
        rows = present + missing  # no value sorts last either way
        return Page(len(rows), [r.to_dict(self.metrics, review_map.get(r.id)) for r in rows[offset:offset + limit]],
                    True, len(self.rows), self.facets(review_map))

    def facets(self, review_map: dict[str, dict]) -> dict[str, dict[str, int]]:
        """Counts of each value of each filterable field over the whole file
        (``{}`` while it is still being read). Fixed fields are counted once;
        review labels, which change, every time (from the sidecar, small)."""
        if not self.done:
            return {}
        if self._facets is None:
            out: dict[str, dict[str, int]] = {}
            for name in [f for f in FACETS if f != "review"] + [f"score.{m}" for m in self.metrics]:
                getter = self._getter(name, {})
                counts: dict[str, int] = {}
                for row in self.rows:
                    value = _as_text(getter(row))
                    counts[value] = counts.get(value, 0) + 1
                out[name] = dict(sorted(counts.items()))
            self._facets = out
        labels: dict[str, int] = {}
        for rid, entry in review_map.items():
            if rid in self.by_id:
                label = self.rows[self.by_id[rid]].review_label(entry)
                labels[label] = labels.get(label, 0) + 1
        labels["none"] = len(self.rows) - sum(labels.values())
        return {**self._facets, "review": dict(sorted(labels.items()))}

    def _getter(self, name: str, review_map: dict[str, dict]) -> Callable[[Row], Any]:
        if name == "review":
            return lambda r: r.review_label(review_map.get(r.id))
        if name.startswith("score."):
            metric = name[len("score."):]
            if metric not in self.metrics:
                raise UserError(f"unknown metric {metric!r}; this file has scores for: "
                                f"{', '.join(self.metrics) or '(none: run aidsafe eval first)'}")
            i = self.metrics.index(metric)
            return lambda r: r.scores[i] if i < len(r.scores) else None
        if name not in SORTS and name not in FACETS:
            raise UserError(f"cannot filter or sort by {name!r}; use one of {', '.join(SORTS + FACETS)} "
                            "or score.METRIC")
        return lambda r: getattr(r, name)

    def scores(self, metric: str) -> dict[str, float]:
        """id -> score of ``metric`` for every scored record (whole file)."""
        self.wait()
        if metric not in self.metrics:
            return {}
        i = self.metrics.index(metric)
        return {r.id: r.scores[i] for r in self.rows if i < len(r.scores) and r.scores[i] is not None}


def _text(cot: Any) -> str:
    return " ".join(map(str, cot)) if isinstance(cot, list) else str(cot or "")


def _as_text(value: Any) -> str:
    return "none" if value is None else str(value)


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


__all__ = ["FACETS", "Page", "Row", "RunIndex", "SORTS", "summarize"]
