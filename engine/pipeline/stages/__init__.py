"""Stage kinds, each in its own module, registered by name with ``@stage``."""

from aidsafe.pipeline.stages import belief  # noqa: F401  (registration)  # noqa: F401  (registration: preference pairs)
from aidsafe.pipeline.stages import decompose
from aidsafe.pipeline.stages import deliberate
from aidsafe.pipeline.stages import filter
from aidsafe.pipeline.stages import filters
from aidsafe.pipeline.stages import generate
from aidsafe.pipeline.stages import pair
from aidsafe.pipeline.stages import refine
from aidsafe.pipeline.stages import respond
from aidsafe.pipeline.stages._base import FILTERS, STAGES, Filter, Stage, StageContext, StageResult, filter_kind, stage

__all__ = ["FILTERS", "STAGES", "Filter", "Stage", "StageContext", "StageResult", "filter_kind", "stage"]
