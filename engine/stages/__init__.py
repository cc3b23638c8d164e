"""Stage kinds, each in its own module, registered by name with ``@stage``."""

from ._base import FILTERS, STAGES, Filter, Stage, StageContext, StageResult, filter_kind, stage
from . import decompose, deliberate, filter, filters, generate, refine, respond  # noqa: F401  (registration)
from . import belief, pair  # noqa: F401  (registration: preference pairs)

__all__ = ["FILTERS", "STAGES", "Filter", "Stage", "StageContext", "StageResult", "filter_kind", "stage"]
