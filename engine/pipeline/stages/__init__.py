"""Stage kinds, each in its own private module, registered by name with
``@stage`` (filters with ``@filter_kind``). Third-party kinds and filters come
from the entry-point groups ``aidsafe.stages`` and ``aidsafe.filters``."""

from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages import (  # noqa: F401  (importing registers the built-in kinds)
    _belief,
    _decide,
    _decompose,
    _deliberate,
    _filter,
    _filters,
    _gate,
    _generate,
    _pair,
    _predict,
    _refine,
    _respond,
)
from aidsafe.pipeline.stages._base import (
    FILTERS,
    STAGES,
    Filter,
    SingleAgentStage,
    Stage,
    StageContext,
    StageResult,
    clean_thoughts,
    extras,
    filter_kind,
    stage,
)

__all__ = ["FILTERS", "INPUT_DOCS", "STAGES", "Contract", "Filter", "SingleAgentStage", "Stage", "StageContext", "StageResult",
           "clean_thoughts", "extras", "filter_kind", "stage"]
