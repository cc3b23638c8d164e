"""``decide``: the safety decision, from the best evidence the record has.

A small model does not make the safety decision well by judgment; it copies
its demos. So the decision comes from evidence: the input's human label
(``input.label``) when the record has one, no model call; otherwise the
stage's screening agent decides, best with the nearest labeled precedents as
its demos (``demos: {select: nearest, ...}`` on the agent).

    input: {field: prompt, label: label}
    agents:
      screener:
        instructions: Decide whether to answer the query or decline it.
        demos: {select: nearest, k: 6, pool: ../data/precedents/pool.jsonl}
    stages:
      - {id: decision, kind: decide, agent: screener}

It writes ``decision`` (``answer`` or ``decline``) and ``decision_source``
(``label`` or ``screen``), read by name like any field: later agents list
``decision`` in their ``inputs:``, demos carry ``when: "decision == 'answer'"``,
a ``behavior`` filter can check the response ``against: decision``.
"""

from __future__ import annotations

from aidsafe.config._specs import DECISIONS, FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import SingleAgentStage, StageResult, extras, stage

DECISION = FieldSpec("decision", "str", "answer: the request is allowed (or an everyday task that only sounds "
                                        "alarming), so it gets a full, direct answer; decline: answering would "
                                        "give real help for something a policy does not allow.", DECISIONS)
SOURCE = FieldSpec("decision_source", "str", "Where the decision came from: the input's label, the screen, or a deliberator who overturned the screen.",
                   ("label", "screen", "deliberation"))


@stage("decide")
class Decide(SingleAgentStage):
    """The input's label when it is ``answer`` or ``decline``; else the
    screening agent's ``decision``."""

    contract = Contract(
        inputs={k: INPUT_DOCS[k] for k in ("query", "policies", "intents")},
        default_inputs=("query",),
        outputs={"decision": DECISION},
    )

    @classmethod
    def writes(cls, raw, agents, contract):
        """``decision`` and ``decision_source``, plus the agent's own extra outputs."""
        return {**super().writes(raw, agents, contract), "decision": DECISION, "decision_source": SOURCE}

    def max_calls(self):
        """One screening call, only for a record without a label."""
        return 1

    def forward(self, state, ctx):
        """The label, or the screen's answer."""
        extra = dict(state.get("extra", {}))
        label = str(state.get("label") or "").lower()
        if label in DECISIONS:
            extra.update(decision=label, decision_source="label")
            return StageResult({"extra": extra})
        pred = self.agent(**self.context_for(state, ctx))
        decision = str(pred.decision or "").strip().lower()
        if decision not in DECISIONS:  # the enum is enforced by the adapter; a plugin LM may still slip
            raise ValueError(f"agent {self.agent.spec.name!r} decided {pred.decision!r}; expected one of "
                             f"{', '.join(DECISIONS)}")
        extra.update(extras(pred, self.agent), decision=decision, decision_source="screen")
        return StageResult({"extra": extra})
