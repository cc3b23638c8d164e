"""Nearest labeled precedents: the demos a screening agent sees for a record
are the ``k`` pool rows whose queries are most similar to the record's query
(embedding kNN, as DSPy's ``KNNFewShot``), so a small model that copies its
demos copies the right decision.

A pool is a JSONL or CSV file (read by the one record reader,
:func:`aidsafe.runtime.iter_rows`); each row has a ``query`` (or
``prompt``) and its label columns (``decision: answer|decline``, optional
``reason``, ...). The default pool is ``data/precedents/pool.jsonl``.

Importing this module imports neither DSPy nor a model.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from operator import mul
from pathlib import Path
from typing import TYPE_CHECKING

from aidsafe._util import paths
from aidsafe._util.errors import UserError
from aidsafe._util.hashing import sha256_of
from aidsafe.runtime._records import iter_rows

if TYPE_CHECKING:
    from aidsafe.models._embed import Embedder

__all__ = ["QUERY_FIELDS", "Neighbour", "NearestPool", "default_pool_path"]

QUERY_FIELDS = ("query", "prompt")
_POOL_FORMATS = (".jsonl", ".ndjson", ".csv")


def default_pool_path() -> Path:
    """``data/precedents/pool.jsonl`` (checkout, installed share, or AIDSAFE_HOME)."""
    return paths.project_root() / "data" / "precedents" / "pool.jsonl"


@dataclass(frozen=True)
class Neighbour:
    """One selected pool row: its position in the pool, its cosine similarity
    to the query, and the row (``query`` always set)."""

    index: int
    score: float
    row: dict


class NearestPool:
    """A pool of labeled precedents and the ``k`` nearest of them to a query.

    The pool file is read (and checked) when the pool is built; its queries
    are embedded on the first :meth:`select`, in one batch (cached when the
    embedder is a :class:`aidsafe.models.CachedEmbedder`). Selection is
    deterministic: cosine similarity, ties broken by pool order.

    ``identity`` (a sha256 of the pool file's bytes, the embedder's identity
    and ``k``) changes exactly when a selection can: put it in a stage key.
    ``required`` lists the label columns every row must fill.
    """

    def __init__(self, path: str | Path, embedder: Embedder, k: int = 4, *,
                 required: tuple[str, ...] = ("decision",)):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UserError(f"precedent pool {path}: k must be a whole number of at least 1, got {k!r}")
        self.path = Path(path)
        self.embedder = embedder
        self.k = k
        self.rows = _read_pool(self.path, tuple(required))
        self.content_sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self.identity = sha256_of({"pool": self.content_sha256, "embedder": embedder.identity, "k": k})
        self._vectors: list[list[float]] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.rows)

    def vectors(self) -> list[list[float]]:
        """The pool queries' embeddings, computed once."""
        with self._lock:
            if self._vectors is None:
                self._vectors = self.embedder.embed([row["query"] for row in self.rows])
            return self._vectors

    def neighbours(self, query: str, k: int | None = None, *, exclude: int | None = None) -> list[Neighbour]:
        """The ``k`` (default :attr:`k`) pool rows nearest to ``query``, best
        first; ``exclude`` leaves one pool position out (leave-one-out)."""
        k = self.k if k is None else k
        pool = self.vectors()
        [target] = self.embedder.embed([query])
        scored = sorted(((-sum(map(mul, target, vector)), i) for i, vector in enumerate(pool) if i != exclude))
        return [Neighbour(i, -negative, dict(self.rows[i])) for negative, i in scored[:k]]

    def select(self, query: str, k: int | None = None) -> list[dict]:
        """The ``k`` (default :attr:`k`) nearest pool rows to ``query``, best
        first, as copies of the rows."""
        return [n.row for n in self.neighbours(query, k)]

    def __repr__(self) -> str:
        return f"NearestPool({self.path}, {len(self.rows)} rows, k={self.k})"


def _read_pool(path: Path, required: tuple[str, ...]) -> list[dict]:
    """The pool's rows, each with ``query`` set; every problem is a
    :class:`UserError` naming the file and line."""
    hint = "give a JSONL or CSV file of rows with a query and its label, e.g. " \
           '{"query": "How do I kill a Python process?", "decision": "answer"}'
    if path.suffix.lower() not in _POOL_FORMATS:
        raise UserError(f"precedent pool {path}: unsupported format {path.suffix or '(no suffix)'}; {hint}")
    if not path.is_file():
        raise UserError(f"precedent pool {path} not found; {hint} (the default pool is "
                        f"data/precedents/pool.jsonl)")
    rows = []
    try:
        for number, row, problem in iter_rows(path):
            if problem is not None:
                raise UserError(f"precedent pool {path}: {problem}")
            where = f"{path}:{number}"
            query = next((row[f] for f in QUERY_FIELDS if isinstance(row.get(f), str) and row[f].strip()), None)
            if query is None:
                raise UserError(f"{where}: a precedent needs a non-empty 'query' (or 'prompt') text; "
                                f"found the fields {', '.join(sorted(map(str, row))) or '(none)'}")
            missing = [f for f in required if row.get(f) in (None, "")]
            if missing:
                raise UserError(f"{where}: the precedent {query[:60]!r} has no {', '.join(map(repr, missing))}; "
                                "every pool row needs its label")
            rows.append({**row, "query": query})
    except OSError as exc:
        raise UserError(f"precedent pool {path} cannot be read: {exc.strerror or exc}") from None
    if not rows:
        raise UserError(f"precedent pool {path} has no rows; {hint}")
    return rows
