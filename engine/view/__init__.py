"""``aidsafe view``: read, compare and review generated data in the browser.

A small local web app (standard-library HTTP server on 127.0.0.1, a static
front end shipped in the package, no network) over JSONL runs, scored files,
DPO runs and compare folders; human review labels go to a sidecar file next
to each run (``out.review.jsonl``), which ``aidsafe export --reviewed`` reads.
"""

from aidsafe._util.lazy import lazy_exports

__all__ = ["ReviewStore", "RunIndex", "ViewServer", "apply_reviews", "make_server", "read_reviews", "sidecar_path"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "RunIndex": "._index", "ViewServer": "._server", "make_server": "._server",
    **{name: "._review" for name in ("ReviewStore", "apply_reviews", "read_reviews", "sidecar_path")},
})
