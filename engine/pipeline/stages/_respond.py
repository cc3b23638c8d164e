"""``respond``: one agent writes the final response from the refined thoughts."""

from __future__ import annotations

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import SingleAgentStage, StageResult, extras, stage


@stage("respond")
class Respond(SingleAgentStage):
    contract = Contract(
        inputs={k: INPUT_DOCS[k] for k in ("query", "policies", "intents", "thoughts")},
        default_inputs=("query", "policies", "thoughts"),
        outputs={"response": FieldSpec("response", "str",
                                       "The final response to the user, following the thoughts and the policies.")},
        produces=("response",),
    )

    def forward(self, state, ctx):
        pred = self.agent(**self.context_for(state, ctx))
        return StageResult({"response": str(pred.response or "").strip(),
                            "extra": {**state.get("extra", {}), **extras(pred, self.agent)}})
