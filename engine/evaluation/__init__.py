"""Judging data and models: LLM judges, ``eval`` with bootstrap intervals,
benchmarks on the shipped public sets, the one refusal classifier, reports."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["JudgePanel", "classify_refusal", "evaluate", "is_refusal", "load_judges", "run_benchmark", "run_tasks"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "JudgePanel": "._judges", "load_judges": "._judge_specs", "evaluate": "._eval", "run_benchmark": "._benchmarks",
    "classify_refusal": "._refusal", "is_refusal": "._refusal", "run_tasks": "._tasks",
})
