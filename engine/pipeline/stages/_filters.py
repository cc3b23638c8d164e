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

    def apply(self, thoughts, state, ctx):
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

    def apply(self, thoughts, state, ctx):
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

    def apply(self, thoughts, state, ctx):
        low, high = self.spec.get("min_chars", 0), self.spec.get("max_chars", float("inf"))
        kept = [t for t in thoughts if low <= len(t) <= high]
        return kept, [t for t in thoughts if not low <= len(t) <= high], None


@filter_kind("max_thoughts")
class MaxThoughts(Filter):
    """Keep at most `max` thoughts (the first ones)."""

    @classmethod
    def check(cls, spec):
        return [] if "max" in spec else [("type", "max_thoughts needs `max: N`")]

    def apply(self, thoughts, state, ctx):
        limit = self.spec["max"]
        return thoughts[:limit], thoughts[limit:], None


@filter_kind("required_fields")
class RequiredFields(Filter):
    """Mark the record `filtered` when one of `fields` is empty
    (fields: thoughts, response, intents, or any extra output)."""

    @classmethod
    def check(cls, spec):
        return [] if spec.get("fields") else [("type", "required_fields needs `fields: [thoughts, response]`")]

    def apply(self, thoughts, state, ctx):
        current = dict(state, thoughts=thoughts)
        missing = [f for f in self.spec["fields"] if not current.get(f, (current.get("extra") or {}).get(f))]
        reason = f"required field(s) empty: {', '.join(missing)}" if missing else None
        return thoughts, [], reason


def _words(text: str) -> list[str]:
    return _norm(text).split()


def word_runs(text: str, n: int) -> list[tuple[str, ...]]:
    """Every run of ``n`` consecutive (normalised) words in ``text``, in order."""
    words = _words(text)
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


class _Copying(Filter):
    """Base of the filters that catch copied text: a thought holding a run of
    ``min_words`` consecutive words found in :meth:`sources` is removed, and a
    response holding one marks the record ``filtered`` with ``reason``."""

    default_words = 12
    reason = "?"
    # a run the record's own query also contains is the user's words, not a copy
    spare_query = False

    @classmethod
    def check(cls, spec):
        n = spec.get("min_words", cls.default_words)
        return [] if isinstance(n, int) and n >= 4 else [("min_words", f"min_words must be an integer >= 4, found {n!r}")]

    def sources(self, ctx) -> tuple[str, ...]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _grams(self, ctx) -> set[tuple[str, ...]]:
        n = self.spec.get("min_words", self.default_words)
        texts = self.sources(ctx)
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] != texts:
            cached = (texts, {run for text in texts for run in word_runs(text, n)})
            self._cache = cached
        return cached[1]

    def echoes(self, text: str, ctx, query: str = "") -> bool:
        """Whether ``text`` copies ``min_words`` consecutive words of the sources."""
        n = self.spec.get("min_words", self.default_words)
        grams = self._grams(ctx)
        if not grams:
            return False
        own = set(word_runs(query, n)) if self.spare_query else set()
        return any(run in grams and run not in own for run in word_runs(text, n))

    def apply(self, thoughts, state, ctx):
        query = str(state.get("query") or "")
        echoed = [self.echoes(t, ctx, query) for t in thoughts]
        kept = [t for t, e in zip(thoughts, echoed) if not e]
        removed = [t for t, e in zip(thoughts, echoed) if e]
        return kept, removed, self.reason if self.echoes(str(state.get("response") or ""), ctx, query) else None


@filter_kind("policy_echo")
class PolicyEcho(_Copying):
    """Drop thoughts that copy the policy text (a run of ``min_words``
    consecutive words, default 12, found verbatim in the policy set), and
    mark the record ``filtered`` when the response does: training data that
    recites the policies teaches recitation, not reasoning. Naming a policy
    or quoting a few words of it is fine."""

    reason = "the response copies the policy text"

    def sources(self, ctx) -> tuple[str, ...]:
        return (ctx.policies,)


@filter_kind("demo_echo")
class DemoEcho(_Copying):
    """Drop thoughts that copy an example answer from the agents' few-shot
    demos (a run of ``min_words`` consecutive words, default 10, found in a
    demo's outputs and not in the record's own query), and mark the record
    ``filtered`` when the response does. Small models paste a demo's refusal
    whole ("it could seriously harm your heart and throat ... call or text
    988") into answers to unrelated requests; such a record teaches the
    template, not the reasoning."""

    default_words = 10
    reason = "the response copies an example answer from the demos"
    spare_query = True

    def sources(self, ctx) -> tuple[str, ...]:
        return ctx.demo_texts


@filter_kind("response_check")
class ResponseCheck(Filter):
    """Mark the record ``filtered`` when the response is empty, shorter than
    ``min_chars`` (default 1), or ends mid-sentence after ``max_chars``
    (a truncated answer)."""

    @classmethod
    def check(cls, spec):
        low, high = spec.get("min_chars", 1), spec.get("max_chars")
        if high is not None and low > high:
            return [("min_chars", f"min_chars {low} is above max_chars {high}")]
        return []

    def apply(self, thoughts, state, ctx):
        response = str(state.get("response") or "").strip()
        if len(response) < self.spec.get("min_chars", 1):
            return thoughts, [], "the response is empty" if not response else "the response is too short"
        high = self.spec.get("max_chars")
        if high is not None and len(response) > high:
            return thoughts, [], f"the response is longer than {high} characters"
        return thoughts, [], None


@filter_kind("behavior")
class Behavior(Filter):
    """The record's response must do what its label asks: ``answer`` wants a
    full answer, ``decline`` a refusal, by the project's one refusal
    classifier (string match). A mismatch filters the record, naming the
    label and the class found; a record whose label is ``unknown`` or absent
    passes. ``against:`` names the field holding the label (default
    ``label``, the input's; e.g. ``decision`` for a screen's)."""

    @classmethod
    def check(cls, spec):
        against = spec.get("against", "label")
        if not isinstance(against, str) or not against:
            return [("against", f"`against:` names the field holding answer/decline (default label), "
                                f"found {against!r}")]
        return []

    def apply(self, thoughts, state, ctx):
        from aidsafe.evaluation._refusal import EXPECTED_CLASS, classify_refusal

        against = self.spec.get("against", "label")
        label = state.get(against, (state.get("extra") or {}).get(against))
        expected = EXPECTED_CLASS.get(str(label or "").lower())
        if expected is None:
            return thoughts, [], None
        found = classify_refusal(state.get("response"))
        if found == expected:
            return thoughts, [], None
        return thoughts, [], (f"behavior: {against} is {label!r} (wants {expected}), the response is "
                              f"{found} (string match)")
