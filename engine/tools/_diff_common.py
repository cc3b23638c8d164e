"""What both diffs are made of: one changed value (:class:`FieldChange`)
and its short text. Recipe diffs (:mod:`._diff_recipes`) and run diffs
(:mod:`._diff_runs`) report their changes in these terms."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldChange:
    """One value that differs. ``path`` is dotted (``stop.max_rounds``,
    ``filters.before[1].threshold``); ``change`` is ``added``, ``removed`` or
    ``changed`` (``old``/``new`` are None for the missing side)."""

    path: str
    change: str
    old: Any = None
    new: Any = None

    def text(self) -> str:
        """One line: ``path: + new``, ``path: - old`` or ``path: old -> new``."""
        if self.change == "added":
            return f"{self.path}: + {short(self.new)}"
        if self.change == "removed":
            return f"{self.path}: - {short(self.old)}"
        return f"{self.path}: {short(self.old)} -> {short(self.new)}"


def short(value: Any, limit: int = 160) -> str:
    """``value`` on one line (JSON unless text), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["FieldChange", "short"]
