"""Recipe -> DSPy program: agent roles become signatures, stage kinds are
registered by name (and through entry points), ``compile_recipe`` builds the
module tree and the stage cache keys; ``NearestPool`` picks the labeled
precedents nearest to a query (kNN demos)."""

from aidsafe._util.lazy import lazy_exports

__all__ = ["Agent", "Contract", "FILTERS", "Filter", "INPUT_DOCS", "NearestPool", "Neighbour", "Program", "STAGES",
           "SingleAgentStage", "Stage", "StageContext", "StageResult", "clean_thoughts", "compile_recipe",
           "default_pool_path", "extras", "filter_kind", "stage"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Agent": "._agents", "Program": "._compile", "compile_recipe": "._compile",
    **{name: "._nearest" for name in ("NearestPool", "Neighbour", "default_pool_path")},
    **{name: ".stages" for name in ("Contract", "FILTERS", "Filter", "INPUT_DOCS", "STAGES", "SingleAgentStage", "Stage",
                                    "StageContext", "StageResult", "clean_thoughts", "extras", "filter_kind", "stage")},
})
