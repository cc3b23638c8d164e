"""aidsafe_risk: an example third-party plugin for aidsafe.

* ``classify_risk`` - a stage kind: one agent labels the query's risk
  category; the label lands in ``record.extra.risk_category``.
* ``no_urls`` - a filter: drops thoughts that contain a URL.
* ``canned:`` - a model backend (``model: canned:demo``) with scripted
  answers, the shape of any backend: ``complete(request)`` and ``identity()``.

Both use only aidsafe's public API (``aidsafe.pipeline``, ``aidsafe.config``)
and are found through the entry points in ``pyproject.toml``.
"""

from __future__ import annotations

import re

from aidsafe.config import FieldSpec
from aidsafe.pipeline import INPUT_DOCS, Contract, Filter, SingleAgentStage, StageResult, extras

CATEGORIES = ("none", "self_harm", "violence", "weapons", "cyber", "hate", "other")


class ClassifyRisk(SingleAgentStage):
    """One agent reads the query and names its risk category."""

    contract = Contract(
        inputs={"query": INPUT_DOCS["query"], "policies": INPUT_DOCS["policies"]},
        default_inputs=("query",),
        outputs={"risk_category": FieldSpec("risk_category", "str", "One of: " + ", ".join(CATEGORIES) + ".")},
        produces=("risk_category",),  # later stages and `when:`/`where:` conditions may read it
    )

    def forward(self, state, ctx):
        """Label the query; an answer outside the list becomes ``other``."""
        pred = self.agent(**self.context_for(state, ctx))
        label = str(pred.risk_category or "").strip().lower()
        extra = {**state.get("extra", {}), **extras(pred, self.agent),
                 "risk_category": label if label in CATEGORIES else "other"}
        return StageResult({"extra": extra})


class NoUrls(Filter):
    """Drop thoughts that contain a URL (training data should not teach links)."""

    _URL = re.compile(r"https?://", re.IGNORECASE)

    def apply(self, thoughts, state, ctx):
        """Keep the thoughts without a URL."""
        kept = [t for t in thoughts if not self._URL.search(t)]
        return kept, [t for t in thoughts if self._URL.search(t)], None


def canned_backend(spec):
    """Factory for ``model: canned:NAME``: scripted answers through DSPy's real
    adapters (a real backend would call a server here)."""
    from aidsafe.testing.fake import FakeEngine

    return FakeEngine([("CLASSIFIER", {"risk_category": "Cyber"}),
                       ("THINKER", {"thoughts": ["See https://example.com", "Explain safely."], "response": "ok"})],
                      name=spec.model)
