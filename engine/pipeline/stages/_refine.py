"""``refine``: a refiner agent takes every thought from the deliberation and
the last response, and removes repetitive, redundant, deceptive and
policy-inconsistent thoughts. Deterministic filters run before and/or after."""

from __future__ import annotations

from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline.stages._base import Stage, StageResult, clean_thoughts, extras, stage


@stage("refine")
class Refine(Stage):
    contract = Contract(
        inputs={**{k: INPUT_DOCS[k] for k in ("query", "policies", "intents", "response")},
                "thoughts": FieldSpec("thoughts", "list[str]",
                                      "Every thought produced during deliberation, in order.")},
        default_inputs=("query", "policies", "thoughts", "response"),
        outputs={"refined_thoughts": FieldSpec("refined_thoughts", "list[str]",
                                       "The refined chain of thought: the thoughts worth keeping, without "
                                       "repetitive, redundant, deceptive or policy-inconsistent ones.")},
        requires=("thoughts",),
        produces=("thoughts",),
    )

    def __init__(self, spec, agents):
        super().__init__(spec, agents)
        self.agent = agents[spec.agent]

    def agent_modules(self):
        return [self.agent]

    def forward(self, state, ctx):
        removed: list[dict] = list(state.get("removed", []))
        pool = list(state.get("all_thoughts") or state.get("thoughts", []))
        pool, reason = self.apply_filters(self.filters_before, pool, state, removed)
        if reason:
            return StageResult({"thoughts": pool, "removed": removed}, filtered=reason)
        pred = self.agent(**self.context_for(state, ctx, thoughts=pool))
        refined = clean_thoughts(pred.refined_thoughts)
        removed += [{"thought": t, "filter": "refiner"} for t in pool if t not in refined]
        refined, reason = self.apply_filters(self.filters_after, refined, state, removed)
        return StageResult({"thoughts": refined, "removed": removed,
                            "extra": {**state.get("extra", {}), **extras(pred, self.agent)}}, filtered=reason)
