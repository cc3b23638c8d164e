"""``decompose``: one agent lists the explicit and implicit intents of the query."""

from __future__ import annotations

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import Stage, StageResult, clean_thoughts, extras, stage


@stage("decompose")
class Decompose(Stage):
    contract = Contract(
        inputs={k: INPUT_DOCS[k] for k in ("query", "policies")},
        default_inputs=("query",),
        outputs={"intents": FieldSpec("intents", "list[str]",
                                      "The explicit and implicit intents of the query, one per item.")},
        produces=("intents",),
    )

    def __init__(self, spec, agents):
        super().__init__(spec, agents)
        self.agent = agents[spec.agent]

    def agent_modules(self):
        return [self.agent]

    def forward(self, state, ctx):
        pred = self.agent(**self.context_for(state, ctx))
        return StageResult({"intents": clean_thoughts(pred.intents), "extra": {**state.get("extra", {}),
                                                                            **extras(pred, self.agent)}})
