"""``generate``: one agent writes the initial chain of thought and response."""

from __future__ import annotations

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import SingleAgentStage, StageResult, clean_thoughts, extras, stage


@stage("generate")
class Generate(SingleAgentStage):
    contract = Contract(
        inputs={k: INPUT_DOCS[k] for k in ("query", "policies", "intents")},
        default_inputs=("query", "policies", "intents"),
        outputs={
            "thoughts": FieldSpec("thoughts", "list[str]",
                                  "Step-by-step reasoning about the query against the policies, one thought per item."),
            "response": FieldSpec("response", "str", "The response to the user, consistent with the thoughts."),
        },
        produces=("thoughts", "response"),
    )

    def forward(self, state, ctx):
        pred = self.agent(**self.context_for(state, ctx))
        thoughts = clean_thoughts(pred.thoughts)
        return StageResult({"thoughts": thoughts, "response": str(pred.response or "").strip(),
                            "initial": {"thoughts": thoughts, "response": str(pred.response or "").strip()},
                            "extra": {**state.get("extra", {}), **extras(pred, self.agent)}})
