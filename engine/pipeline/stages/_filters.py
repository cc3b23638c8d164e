"""Deterministic refinement filters."""

from __future__ import annotations

import difflib
import re

from aidsafe.pipeline.stages._base import Filter, filter_kind


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


@filter_kind("dedupe")
class Dedupe(Filter):
    """Drop thoughts identical to an earlier one (ignoring case, spacing, punctuation)."""

    def apply(self, thoughts, state):
        seen, kept, removed = set(), [], []
        for thought in thoughts:
            key = _norm(thought)
            (removed if key in seen else kept).append(thought)
            seen.add(key)
        return kept, removed, None


@filter_kind("near_duplicate")
class NearDuplicate(Filter):
    """Drop a thought whose similarity to an earlier kept one is >= threshold
    (difflib ratio over normalised text; default 0.9)."""

    def apply(self, thoughts, state):
        threshold = self.spec.get("threshold", 0.9)
        kept, removed = [], []
        for thought in thoughts:
            norm = _norm(thought)
            if any(difflib.SequenceMatcher(None, norm, _norm(k)).ratio() >= threshold for k in kept):
                removed.append(thought)
            else:
                kept.append(thought)
        return kept, removed, None


@filter_kind("length")
class Length(Filter):
    """Drop thoughts shorter than min_chars or longer than max_chars."""

    @classmethod
    def check(cls, spec):
        if "min_chars" not in spec and "max_chars" not in spec:
            return [("type", "a length filter needs min_chars and/or max_chars, e.g. {type: length, min_chars: 10}")]
        if spec.get("min_chars", 0) > spec.get("max_chars", float("inf")):
            return [("min_chars", f"min_chars {spec['min_chars']} is above max_chars {spec['max_chars']}")]
        return []

    def apply(self, thoughts, state):
        low, high = self.spec.get("min_chars", 0), self.spec.get("max_chars", float("inf"))
        kept = [t for t in thoughts if low <= len(t) <= high]
        return kept, [t for t in thoughts if not low <= len(t) <= high], None


@filter_kind("max_thoughts")
class MaxThoughts(Filter):
    """Keep at most `max` thoughts (the first ones)."""

    @classmethod
    def check(cls, spec):
        return [] if "max" in spec else [("type", "max_thoughts needs `max: N`")]

    def apply(self, thoughts, state):
        limit = self.spec["max"]
        return thoughts[:limit], thoughts[limit:], None


@filter_kind("required_fields")
class RequiredFields(Filter):
    """Mark the record `filtered` when one of `fields` is empty
    (fields: thoughts, response, intents, or any extra output)."""

    @classmethod
    def check(cls, spec):
        return [] if spec.get("fields") else [("type", "required_fields needs `fields: [thoughts, response]`")]

    def apply(self, thoughts, state):
        current = dict(state, thoughts=thoughts)
        missing = [f for f in self.spec["fields"] if not current.get(f, (current.get("extra") or {}).get(f))]
        reason = f"required field(s) empty: {', '.join(missing)}" if missing else None
        return thoughts, [], reason
