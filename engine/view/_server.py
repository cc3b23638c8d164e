"""The ``aidsafe view`` web app: a JSON API and a static front end, served by
the standard library's :class:`http.server.ThreadingHTTPServer` on
127.0.0.1 only.

Only the files given are served, and never by path: the API names a file by
its position in the list (``file=0``), and the front end's assets come from a
fixed table of names shipped in the package. Any other path is a 404, a path
with ``..`` a 400. A bad file, a bad query or a review conflict is a JSON
``{"error": ...}`` the page shows; a bug is a 500 with a short message (the
traceback goes to the terminal, not the page).

API (GET unless noted; ``file``/``files`` are positions in ``/api/files``)::

    /api/files                      the runs, with kind, count and any error
    /api/records?file=&offset=&limit=&sort=&desc=&q=&status=&stop=&rounds=&refusal=&kind=&review=&score.M=
    /api/record?file=&id=           one record, its row, review and neighbours
    /api/compare?files=0,1&offset=&limit=&only=diff
    /api/summary?files=0,1          per-metric means with 95% CIs, paired differences from the first
    POST /api/review                {"file", "id", "label", "note", "rev", "edit"}

A compare folder lists its variants in ``aidsafe compare``'s order (its
``compare.json``; the first variant is the reference every difference is
measured against), else alphabetically.

Only the viewer's own page may write. Every request must name the viewer
itself in ``Host`` (127.0.0.1 or localhost with the port: a DNS-rebinding
page on another name gets 403), and a write must carry the session token
the server puts in the page (``X-Aidsafe-Token``), as JSON, with no
foreign ``Origin`` or cross-site ``Sec-Fetch-Site``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sys
import threading
import traceback
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from aidsafe._util.errors import UserError
from aidsafe.tools._compare_manifest import compare_order
from aidsafe.view._index import FACETS, RunIndex
from aidsafe.view._review import Review, ReviewConflict, ReviewStore, check_edit, record_hash, sidecar_path

HOST = "127.0.0.1"
ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}
MAX_LIMIT = 500
_MAX_BODY = 1024 * 1024  # a review with an edited CoT and response


@dataclass
class Source:
    """One file the viewer serves."""

    path: Path
    label: str
    index: RunIndex
    reviews: ReviewStore
    group: str | None = None  # the compare folder it came from

    def info(self, key: int) -> dict:
        """What ``/api/files`` says about it."""
        kind = "scored" if self.path.name.endswith(".scored.jsonl") else "run"
        if self.index.rows and any(r.kind == "dpo" for r in self.index.rows[:50]):
            kind = "dpo"
        return {"file": key, "label": self.label, "name": self.path.name, "kind": kind, "group": self.group,
                "count": len(self.index.rows), "complete": self.index.done, "error": self.index.error,
                "metrics": list(self.index.metrics), "review_file": sidecar_path(self.path).name}


@dataclass
class ViewApp:
    """The files and their indexes, shared by every request."""

    sources: list[Source] = field(default_factory=list)
    # Summaries of fully indexed files never change (files are read once): keyed by the files' positions.
    summaries: dict[tuple[int, ...], dict] = field(default_factory=dict)
    blur: bool = True  # the content warning's default (`aidsafe view --no-blur` turns it off)

    def source(self, key: str | None) -> Source:
        """The source named by a ``file`` parameter (a position)."""
        if key is None or not key.isdigit() or int(key) >= len(self.sources):
            raise UserError(f"unknown file {key!r}: files are named by their number in /api/files "
                            f"(0 to {len(self.sources) - 1}); only the files given to `aidsafe view` are served")
        return self.sources[int(key)]


def _is_run_file(path: Path) -> bool:
    name = path.name
    return name.endswith(".jsonl") and not name.endswith(".review.jsonl") and not name.startswith(".")


def collect_sources(paths: list[str | Path]) -> ViewApp:
    """The files to serve: each JSONL run given, and the runs in each compare
    folder given (``OUT_DIR/<variant>.jsonl``; a variant's ``.scored.jsonl``
    replaces its run, as it holds the same records plus scores). Missing
    paths and folders without runs are a :class:`UserError`."""
    app = ViewApp()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            runs = sorted(p for p in path.iterdir() if p.is_file() and _is_run_file(p))
            scored = {p.name[:-len(".scored.jsonl")] for p in runs if p.name.endswith(".scored.jsonl")}
            runs = [p for p in runs if p.name.endswith(".scored.jsonl") or p.name[:-len(".jsonl")] not in scored]
            if not runs:
                raise UserError(f"{path}: a folder without .jsonl runs; give run files (OUT.jsonl) or a compare "
                                "folder (`aidsafe compare --out-dir`)")
            order = compare_order(path)
            runs.sort(key=lambda p: (order.index(_variant(p)) if _variant(p) in order else len(order), p.name))
            for p in runs:
                app.sources.append(_source(p, _variant(p), group=path.name))
        elif path.is_file():
            if path.name.endswith(".review.jsonl"):
                raise UserError(f"{path} is a review sidecar; give the run it belongs to")
            app.sources.append(_source(path, path.name))
        else:
            raise UserError(f"{str(path)!r} not found; give JSONL runs (out.jsonl, out.scored.jsonl) or compare "
                            "folders")
    if not app.sources:
        raise UserError("nothing to view: give one or more JSONL runs or compare folders")
    labels = [s.label for s in app.sources]
    for s in app.sources:  # same names from two folders: tell them apart
        if labels.count(s.label) > 1:
            s.label = f"{s.path.parent.name}/{s.label}"
    return app


def _variant(path: Path) -> str:
    """A compare folder's variant name of a run file (``a.scored.jsonl`` -> ``a``)."""
    return path.name[:-len(".scored.jsonl")] if path.name.endswith(".scored.jsonl") else path.stem


def _source(path: Path, label: str, group: str | None = None) -> Source:
    return Source(path, label, RunIndex(path, label), ReviewStore(path), group)


# ------------------------------------------------------------------ API

def _int(query: dict, name: str, default: int, low: int = 0, high: int | None = None) -> int:
    raw = query.get(name, [None])[0]
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name} must be a whole number, found {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise UserError(f"{name} must be between {low} and {high}, found {value}")
    return value


def _one(query: dict, name: str, default: str | None = None) -> str | None:
    return query.get(name, [default])[0]


def api_files(app: ViewApp, query: dict) -> dict:
    return {"files": [s.info(i) for i, s in enumerate(app.sources)], "blur": app.blur}


def api_records(app: ViewApp, query: dict) -> dict:
    source = app.source(_one(query, "file"))
    filters = {name: _one(query, name) for name in FACETS if _one(query, name)}
    filters.update({k: v[0] for k, v in query.items() if k.startswith("score.") and v and v[0]})
    page = source.index.page(offset=_int(query, "offset", 0), limit=_int(query, "limit", 50, 1, MAX_LIMIT),
                             filters=filters, sort=_one(query, "sort") or "position",
                             desc=_one(query, "desc") in ("1", "true"), query=_one(query, "q") or "",
                             reviews=source.reviews.all)
    return {"file": source.info(int(_one(query, "file"))), "total": page.total, "complete": page.complete,
            "indexed": page.indexed, "rows": page.rows, "facets": page.facets, "metrics": source.index.metrics}


def api_record(app: ViewApp, query: dict) -> dict:
    key = _one(query, "file")
    source = app.source(key)
    rid = _one(query, "id")
    if rid is None:
        raise UserError("give the record's id: /api/record?file=N&id=ID")
    row, record = source.index.record(rid)
    rows = source.index.rows
    prev_id = rows[row.position - 1].id if row.position > 0 else None
    next_id = rows[row.position + 1].id if row.position + 1 < len(rows) else None
    others = []
    for i, other in enumerate(app.sources):  # the same id in the other files (compare)
        if other is not source and other.index.contains(rid):  # waits for a file still being indexed
            others.append({"file": i, "label": other.label})
    review = source.reviews.get(rid)
    return {"file": source.info(int(key)), "row": row.to_dict(source.index.metrics, review),
            "record": record, "review": review, "review_label": row.review_label(review), "hash": row.chash,
            "prev": prev_id, "next": next_id, "also_in": others}


def _files(app: ViewApp, query: dict) -> list[tuple[int, Source]]:
    raw = _one(query, "files") or ",".join(str(i) for i in range(len(app.sources)))
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    out = [(int(k), app.source(k)) for k in keys]
    if len(out) < 2:
        raise UserError("compare needs two or more files: files=0,1")
    return out


def api_compare(app: ViewApp, query: dict) -> dict:
    chosen = _files(app, query)
    for _, s in chosen:
        s.index.wait()
    only_diff = _one(query, "only") == "diff"
    ids = list(dict.fromkeys(rid for _, s in chosen for rid in s.index.by_id))
    matched = []
    for rid in ids:
        cells = []
        for _, s in chosen:
            pos = s.index.by_id.get(rid)
            cells.append(None if pos is None else s.index.rows[pos])
        present = [c for c in cells if c is not None]
        differs = len(present) < len(cells) or len({(c.digest, c.status) for c in present}) > 1
        if only_diff and not differs:
            continue
        matched.append((rid, cells, differs))
    offset, limit = _int(query, "offset", 0), _int(query, "limit", 50, 1, MAX_LIMIT)
    rows = [{"id": rid, "differs": differs,
             "cells": [None if c is None else c.to_dict(s.index.metrics, s.reviews.get(rid))
                       for c, (_, s) in zip(cells, chosen)]}
            for rid, cells, differs in matched[offset:offset + limit]]
    shared = sum(1 for rid in ids if all(rid in s.index.by_id for _, s in chosen))
    return {"files": [s.info(k) for k, s in chosen], "total": len(matched), "shared": shared, "ids": len(ids),
            "rows": rows}


def api_summary(app: ViewApp, query: dict) -> dict:
    """Per-metric means with 95% bootstrap intervals (``aidsafe eval``'s),
    and each file's difference from the first, paired over shared ids."""
    from aidsafe.evaluation._stats import CONFIDENCE, bootstrap_difference, bootstrap_mean

    raw = _one(query, "files")
    chosen = _files(app, query) if raw and "," in raw else [(int(raw or 0), app.source(raw or "0"))]
    for _, s in chosen:
        s.index.wait()
    key = tuple(k for k, _ in chosen)
    if key in app.summaries:
        return app.summaries[key]
    metrics = list(dict.fromkeys(m for _, s in chosen for m in s.index.metrics))
    table = []
    for metric in metrics:
        first = chosen[0][1].index.scores(metric)
        cells = []
        for n, (_, s) in enumerate(chosen):
            scores = s.index.scores(metric)
            cell = {"label": s.label, **bootstrap_mean(list(scores.values())).to_dict()}
            if n:
                shared = [rid for rid in first if rid in scores]
                paired = len(shared) >= 2
                diff = (bootstrap_difference([first[r] for r in shared], [scores[r] for r in shared], True)
                        if paired else bootstrap_difference(list(first.values()), list(scores.values()), False))
                cell["difference"] = {**diff.to_dict(), "paired": paired}
            cells.append(cell)
        table.append({"metric": metric, "cells": cells})
    result = {"confidence": CONFIDENCE, "files": [s.info(k) for k, s in chosen], "metrics": table}
    if all(s.index.done for _, s in chosen):
        app.summaries[key] = result
    return result


def api_review(app: ViewApp, body: dict) -> dict:
    source = app.source(str(body.get("file")))
    rid = body.get("id")
    if not isinstance(rid, str) or rid not in source.index.by_id:
        raise UserError(f"no record with id {rid!r} in {source.label}")
    note = body.get("note") or ""
    if not isinstance(note, str):
        raise UserError("note must be text")
    base = body.get("rev")
    if base is not None and not isinstance(base, int):
        raise UserError("rev must be a whole number (the rev the page loaded, 0 for none)")
    edit = check_edit(body["edit"]) if body.get("edit") is not None else None
    _, record = source.index.record(rid)
    entry = source.reviews.save(Review(rid, body.get("label"), note, record_hash(record), edit), base, record)
    return {"review": entry, "review_file": str(source.reviews.path)}


GET_ROUTES = {"/api/files": api_files, "/api/records": api_records, "/api/record": api_record,
              "/api/compare": api_compare, "/api/summary": api_summary}


class _Handler(BaseHTTPRequestHandler):
    server_version = "aidsafe-view"
    app: ViewApp  # set on the class made per server
    quiet = True

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        if not self.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: int, message: str, **extra) -> None:
        self._json(status, {"error": message, **extra})

    def _route(self) -> tuple[str, dict] | None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if ".." in path or "\\" in path or "\x00" in path:
            self._error(HTTPStatus.BAD_REQUEST, f"refused path {path!r}: '..' and backslashes are not served")
            return None
        return path, parse_qs(parts.query, keep_blank_values=True)

    def _origins(self) -> set[str]:
        port = self.server.server_address[1]
        return {f"{name}:{port}" for name in (HOST, "localhost")} | ({HOST, "localhost"} if port == 80 else set())

    def _host_ok(self) -> bool:
        """A request for another host name (DNS rebinding) is refused: only
        the viewer's own address and port, by IP or as localhost."""
        host = self.headers.get("Host")
        if host is None or host.lower() in self._origins():
            return True
        self._error(HTTPStatus.FORBIDDEN, f"refused Host {host!r}: the viewer answers only at {self.server.url}")
        return False

    def _write_ok(self) -> bool:
        """A write comes from the viewer's own page: its session token, JSON,
        and no foreign Origin or cross-site fetch."""
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() not in self._origins():
            self._error(HTTPStatus.FORBIDDEN, f"refused a write from origin {origin!r}: only the viewer's page "
                                              "may save reviews")
            return False
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            self._error(HTTPStatus.FORBIDDEN, "refused a cross-site write: only the viewer's page may save reviews")
            return False
        token = self.headers.get("X-Aidsafe-Token", "")
        if not hmac.compare_digest(token.encode("utf-8", "replace"), self.server.token.encode()):
            self._error(HTTPStatus.FORBIDDEN, "missing or wrong session token (X-Aidsafe-Token): reviews are "
                                              "saved from the viewer's page; reload it")
            return False
        if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the review as application/json")
            return False
        return True

    def do_HEAD(self):  # noqa: N802 - the stdlib's name
        self.do_GET()

    def do_GET(self):  # noqa: N802
        if not self._host_ok():
            return
        routed = self._route()
        if routed is None:
            return
        path, query = routed
        if path in ("/", "/index.html"):
            path = "/static/index.html"
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name not in ASSETS:
                return self._error(HTTPStatus.NOT_FOUND, f"no asset {name!r}")
            body = resources.files("aidsafe.view").joinpath("static", name).read_bytes()
            if name == "index.html":
                body = body.replace(b"{{AIDSAFE_TOKEN}}", self.server.token.encode())
            return self._send(HTTPStatus.OK, body, ASSETS[name])
        handler = GET_ROUTES.get(path)
        if handler is None:
            return self._error(HTTPStatus.NOT_FOUND, f"not found: {path} (the viewer serves /, /static/ and /api/)")
        self._call(lambda: handler(self.app, query))

    def do_POST(self):  # noqa: N802
        if not self._host_ok():
            return
        routed = self._route()
        if routed is None:
            return
        path, _ = routed
        if path != "/api/review":
            return self._error(HTTPStatus.NOT_FOUND, f"not found: POST {path}")
        if not self._write_ok():
            return
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not raw.isdigit():
            return self._error(HTTPStatus.BAD_REQUEST, f"Content-Length must be a whole number of bytes, "
                                                       f"found {raw[:40]!r}")
        length = int(raw)
        if length > _MAX_BODY:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "review too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "the body must be JSON: {\"file\", \"id\", \"label\", \"note\"}")
        if not isinstance(body, dict):
            return self._error(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        self._call(lambda: api_review(self.app, body))

    def _call(self, func) -> None:
        try:
            data = func()
        except ReviewConflict as exc:
            return self._error(HTTPStatus.CONFLICT, str(exc), current=exc.current)
        except UserError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except Exception as exc:  # a bug: short message on the page, traceback in the terminal
            traceback.print_exc(file=sys.stderr)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(exc).__name__}); "
                                                                  "see the terminal running `aidsafe view`")
        self._json(HTTPStatus.OK, data)


class ViewServer(ThreadingHTTPServer):
    """The viewer's HTTP server; ``url`` is where it listens."""

    daemon_threads = True
    # The socketserver default backlog of 5 resets connections when several
    # tabs (or a reviewer's burst of saves) connect at once.
    request_queue_size = 128
    #: The session's write token: in the page the server sends, required on every write.
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def serve_in_thread(self) -> threading.Thread:
        """Serve from a daemon thread (tests, notebooks); stop with ``shutdown()``."""
        thread = threading.Thread(target=self.serve_forever, name="aidsafe view", daemon=True)
        thread.start()
        return thread


def make_server(paths: list[str | Path], port: int = 0, quiet: bool = True, blur: bool = True) -> ViewServer:
    """A viewer for ``paths`` (runs and compare folders) bound to 127.0.0.1
    (``port`` 0: any free port). Indexing starts at once in the background.
    ``blur``: harmful text starts blurred (the page's toggle still works).
    A missing file or a port in use is a :class:`UserError`."""
    app = collect_sources(paths)
    app.blur = blur
    handler = type("Handler", (_Handler,), {"app": app, "quiet": quiet})
    try:
        server = ViewServer((HOST, port), handler)
        server.token = secrets.token_urlsafe(32)
    except OSError as exc:
        raise UserError(f"cannot listen on {HOST}:{port} ({exc.strerror or exc}); pick another --port "
                        "(0 picks a free one)") from None
    for source in app.sources:
        source.index.start()
    return server


__all__ = ["HOST", "Source", "ViewApp", "ViewServer", "collect_sources", "make_server"]
