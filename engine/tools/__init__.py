"""Tools over recipes and runs: recipe diff, run diff, optimize, compare, export."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["ExportOptions", "check_thinking_template", "compare_recipes", "diff_recipes", "diff_runs", "export",
           "optimize", "push_folder", "render_card", "render_recipe_diff", "render_run_diff"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "compare_recipes": "._compare", "diff_recipes": "._diff_recipes", "render_recipe_diff": "._diff_recipes",
    "diff_runs": "._diff_runs", "render_run_diff": "._diff_runs", "export": "._export", "optimize": "._optimize",
    "ExportOptions": "._export", "render_card": "._card", "push_folder": "._hub",
    "check_thinking_template": "._template",
})
