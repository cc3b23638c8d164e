"""``pair``: score both sides of a preference pair with a judge and keep the
pair only where the scores separate.

The chosen side is the record's current CoT and response; the rejected side
is what a ``belief`` stage wrote. The judge rates each 1-5 for policy
faithfulness against the *original* query (the belief is not shown: the pair
trains on the query alone). The record stays ``ok`` only if
``chosen - rejected >= margin``; otherwise it is ``filtered``, with both
scores and the margin kept in ``preference``. An unscored side (an answer
that cannot be parsed or is out of range) filters the record too: a
separation is never guessed.
"""

from __future__ import annotations

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import Stage, StageResult, stage
from aidsafe.pipeline.stages._belief import check_slot_spec, judge_score, slot_agent, union_contract

DEFAULT_MARGIN = 1

PAIR_JUDGE = Contract(
    inputs={**{k: INPUT_DOCS[k] for k in ("query", "policies", "intents")},
            "thoughts": FieldSpec("thoughts", "list[str]", "The chain of thought to rate, one thought per item."),
            "response": FieldSpec("response", "str", "The response to rate.")},
    default_inputs=("query", "policies", "thoughts", "response"),
    outputs={"score": FieldSpec(
        "score", "int",
        "1-5: how faithfully the chain of thought and the response follow the policies (5: every thought and "
        "the response are policy-compliant and consistent with each other; 1: they violate the policies).")},
)


@stage("pair")
class Pair(Stage):
    slots = {"judge": PAIR_JUDGE}
    options = ("margin",)
    contract = union_contract(slots, requires=("thoughts", "response", "preference"), produces=("preference",))

    @classmethod
    def check_spec(cls, raw):
        return check_slot_spec(cls, raw, required=("judge",))

    def __init__(self, spec, agents):
        super().__init__(spec, agents)
        self.judge = slot_agent(agents[spec.raw["judge"]], PAIR_JUDGE)
        self.margin = spec.raw.get("margin", DEFAULT_MARGIN)

    def agent_modules(self):
        return [self.judge]

    def max_calls(self) -> int:
        """Upper bound of LM calls per record (without parse retries)."""
        return 2

    def forward(self, state, ctx):
        preference = dict(state.get("preference") or {})
        rejected = preference.get("rejected")
        if not rejected:
            return StageResult({"preference": preference}, filtered="no rejected side to pair with")
        # The chosen side is read now, so a stage between belief and pair
        # (a respond stage, say) is reflected.
        chosen = {"cot": list(state.get("thoughts", [])), "response": state.get("response", "")}
        verdicts = {
            "chosen": judge_score(self.judge, self.context_for(state, ctx, thoughts=chosen["cot"],
                                                               response=chosen["response"])),
            "rejected": judge_score(self.judge, self.context_for(state, ctx, thoughts=rejected["cot"],
                                                                 response=rejected["response"])),
        }
        scores = {side: v.score for side, v in verdicts.items()}
        separation = None if None in scores.values() else scores["chosen"] - scores["rejected"]
        kept = separation is not None and separation >= self.margin
        preference.update(chosen=chosen, scores=scores, margin=self.margin, separation=separation, kept=kept,
                          verdicts={side: v.to_dict() for side, v in verdicts.items()})
        if separation is None:
            unscored = " and ".join(side for side, s in scores.items() if s is None)
            reason = f"pair not scored: the judge gave no valid score for {unscored}"
        elif not kept:
            reason = (f"pair scores chosen={scores['chosen']} rejected={scores['rejected']} separate by "
                      f"{separation}, less than margin {self.margin}")
        else:
            reason = None
        return StageResult({"preference": preference}, filtered=reason)
