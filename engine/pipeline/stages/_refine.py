"""``refine``: a refiner agent selects, from the final thoughts of the
deliberation, the ones worth training on: it removes repetitive, redundant,
deceptive and policy-inconsistent thoughts. Deterministic filters run before
and/or after it.

The refiner may only remove. Its answer is checked to be a subset of the
thoughts it was shown, in their order: a thought a deliberator deleted cannot
come back, a reworded thought maps to its original (or is ignored), and an
answer that keeps nothing recognisable keeps everything (logged). When the
refiner removes every thought that names an applicable policy, the first such
thought is kept: the CoT must say which policy governs the answer.
"""

from __future__ import annotations

import difflib

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import SingleAgentStage, StageResult, clean_thoughts, extras, stage
from aidsafe.pipeline.stages._filters import _norm  # the one text normalisation (dedupe uses it too)

# a reworded thought still maps to its original at this similarity
_MATCH = 0.85


def select_subset(original: list[str], answer: list[str]) -> tuple[list[bool], list[str]]:
    """Which of ``original`` the ``answer`` keeps, and the answer's items that
    match no original (inventions). Matching: exact after normalising case,
    spacing and punctuation, else difflib ratio >= 0.85; each original is
    matched at most once; the original order is kept whatever the answer's."""
    keep = [False] * len(original)
    normals = [_norm(t) for t in original]
    invented = []
    for item in answer:
        norm = _norm(item)
        free = [i for i in range(len(original)) if not keep[i]]
        exact = [i for i in free if normals[i] == norm]
        if exact:
            keep[exact[0]] = True
            continue
        scored = sorted(((difflib.SequenceMatcher(None, norm, normals[i]).ratio(), -i) for i in free), reverse=True)
        if scored and scored[0][0] >= _MATCH:
            keep[-scored[0][1]] = True
        else:
            invented.append(item)
    return keep, invented


def names_policy(thought: str, terms: tuple[str, ...]) -> bool:
    """Whether a thought names a policy (by id or name, case-insensitively)."""
    low = thought.lower()
    return any(term.lower() in low or term.lower().replace("_", " ") in low for term in terms if term)


@stage("refine")
class Refine(SingleAgentStage):
    """Select the thoughts worth keeping from the final chain of thought."""

    version = 2  # v2: selects from the final thoughts, checked subset in order
    contract = Contract(
        inputs={**{k: INPUT_DOCS[k] for k in ("query", "policies", "intents", "response")},
                "thoughts": FieldSpec("thoughts", "list[str]", "The final chain of thought, one thought per item.")},
        default_inputs=("query", "policies", "thoughts", "response"),
        outputs={"refined_thoughts": FieldSpec(
            "refined_thoughts", "list[str]",
            "The thoughts to keep, copied word for word from `thoughts` in their order; leave out repetitive, "
            "redundant, deceptive or policy-inconsistent ones. Never add or reword a thought.")},
        requires=("thoughts",),
        produces=("thoughts",),
    )

    def forward(self, state, ctx):
        """Filters before, the refiner's checked selection, filters after."""
        removed: list[dict] = list(state.get("removed", []))
        final = list(state.get("thoughts", []))
        final, reason = self.apply_filters(self.filters_before, final, state, removed, ctx)
        if reason:
            return StageResult({"thoughts": final, "removed": removed}, filtered=reason)
        pred = self.agent(**self.context_for(state, ctx, thoughts=final))
        keep, invented = select_subset(final, clean_thoughts(pred.refined_thoughts))
        notes = []
        if final and not any(keep):
            keep = [True] * len(final)
            notes.append("the refiner's answer matched none of the thoughts: kept them all")
        if invented:
            notes.append(f"ignored {len(invented)} thought(s) the refiner added or reworded beyond recognition")
        policy_thoughts = [i for i, t in enumerate(final) if names_policy(t, ctx.policy_terms)]
        if policy_thoughts and not any(keep[i] for i in policy_thoughts):
            keep[policy_thoughts[0]] = True
            notes.append("kept the first thought that names a policy (the refiner removed them all)")
        refined = [t for t, k in zip(final, keep) if k]
        removed += [{"thought": t, "filter": "refiner"} for t, k in zip(final, keep) if not k]
        refined, reason = self.apply_filters(self.filters_after, refined, state, removed, ctx)
        updates = {"thoughts": refined, "removed": removed,
                   "extra": {**state.get("extra", {}), **extras(pred, self.agent)}}
        if notes or invented:
            updates["refinement"] = {"notes": notes, "ignored": invented}
        return StageResult(updates, filtered=reason)
