"""``decompose``: one agent lists the explicit and implicit intents of the query."""

from __future__ import annotations

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import SingleAgentStage, StageResult, clean_thoughts, extras, stage


@stage("decompose")
class Decompose(SingleAgentStage):
    contract = Contract(
        inputs={k: INPUT_DOCS[k] for k in ("query", "policies")},
        default_inputs=("query",),
        outputs={"intents": FieldSpec("intents", "list[str]",
                                      "The explicit and implicit intents of the query, one per item.")},
        produces=("intents",),
    )

    def forward(self, state, ctx):
        pred = self.agent(**self.context_for(state, ctx))
        return StageResult({"intents": clean_thoughts(pred.intents), "extra": {**state.get("extra", {}),
                                                                            **extras(pred, self.agent)}})
