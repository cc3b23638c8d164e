"""Running a recipe over a file: the run loop, executors (threads, Ray), the
journal and record I/O, and the plan/explain views of the cache."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["InputRecord", "InputSource", "Journal", "RunOptions", "RunSummary", "describe_recipe", "explain_record",
           "input_source", "iter_jsonl_lines", "iter_jsonl_records", "iter_rows", "plan_run", "read_inputs",
           "read_record_at", "read_records", "run", "write_records"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "RunOptions": "._process", "RunSummary": "._run", "run": "._run",
    **{name: "._records" for name in ("InputRecord", "InputSource", "Journal", "input_source", "iter_jsonl_lines",
                                      "iter_jsonl_records", "iter_rows", "read_inputs", "read_record_at",
                                      "read_records", "write_records")},
    **{name: "._plan" for name in ("describe_recipe", "explain_record", "plan_run")},
})
