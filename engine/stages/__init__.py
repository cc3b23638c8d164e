"""Stage kinds, each in its own module, registered by name with ``@stage``."""

from . import belief, decompose, deliberate, filter, filters, generate, pair, refine, respond  # noqa: F401  (registration)  # noqa: F401  (registration: preference pairs)
from ._base import FILTERS, STAGES, Filter, Stage, StageContext, StageResult, filter_kind, stage

__all__ = ["FILTERS", "STAGES", "Filter", "Stage", "StageContext", "StageResult", "filter_kind", "stage"]
