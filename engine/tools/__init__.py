"""Tools over recipes and runs: diff, optimize, compare, export."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["compare_recipes", "diff_recipes", "diff_runs", "export", "optimize"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "compare_recipes": "._compare", "diff_recipes": "._diff", "diff_runs": "._diff", "export": "._export",
    "optimize": "._optimize",
})
