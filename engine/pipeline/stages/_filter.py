"""``filter``: deterministic filters over the current thoughts, no agent."""

from __future__ import annotations

from aidsafe.pipeline._contract import Contract
from aidsafe.pipeline.stages._base import Stage, StageResult, stage


@stage("filter")
class FilterStage(Stage):
    contract = Contract(inputs={}, default_inputs=(), outputs={}, requires=("thoughts",))

    @classmethod
    def check_spec(cls, raw):
        problems = super().check_spec(raw)
        if not raw.get("filters") and not raw.get("where"):
            problems.append(("kind", "a filter stage needs `filters:`, e.g. [{type: dedupe}], or a value filter "
                                     "`where: \"severity >= 3\"`"))
        return problems

    def forward(self, state, ctx):
        removed: list[dict] = list(state.get("removed", []))
        thoughts, reason = self.apply_filters(self.filters_before + self.filters_after,
                                              list(state.get("thoughts", [])), state, removed, ctx)
        return StageResult({"thoughts": thoughts, "removed": removed}, filtered=reason)
