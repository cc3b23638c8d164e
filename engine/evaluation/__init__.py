"""Judging data and models: LLM judges, ``eval`` with bootstrap intervals,
benchmarks on the shipped public sets, the one refusal classifier, reports."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["JudgePanel", "evaluate", "load_judges", "run_benchmark"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "JudgePanel": "._judges", "load_judges": "._judges", "evaluate": "._eval", "run_benchmark": "._benchmarks",
})
