"""aidsafe: a declarative engine for policy-embedded safety-reasoning data.

AIDSAFE (Kumarage et al., ACL Findings 2025): intent decomposition, an initial
chain of thought, multi-agent deliberation over a policy set, refinement.

Importing the package is cheap and changes nothing in the host process: the
public names below are loaded on first use (PEP 562), and environment or DSPy
settings are touched only when models are built for a run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS = {
    "Cache": "aidsafe.store",
    "ModelError": "aidsafe._util.errors",
    "OutputParseError": "aidsafe._util.errors",
    "RecipeError": "aidsafe._util.errors",
    "UserError": "aidsafe._util.errors",
    "PolicySet": "aidsafe.config",
    "Recipe": "aidsafe.config",
    "load_policy_set": "aidsafe.config",
    "load_recipe": "aidsafe.config",
    "Program": "aidsafe.pipeline",
    "compile_recipe": "aidsafe.pipeline",
    "build_models": "aidsafe.models",
    "register_engine": "aidsafe.models",
    "RunOptions": "aidsafe.runtime",
    "RunSummary": "aidsafe.runtime",
    "run": "aidsafe.runtime",
}

__all__ = [
    "Cache", "ModelError", "OutputParseError", "PolicySet", "Program", "Recipe", "RecipeError", "RunOptions",
    "RunSummary", "UserError", "__version__", "build_models", "compile_recipe", "load_policy_set", "load_recipe",
    "register_engine", "run",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aidsafe._util.errors import ModelError, OutputParseError, RecipeError, UserError
    from aidsafe.config import PolicySet, Recipe, load_policy_set, load_recipe
    from aidsafe.models import build_models, register_engine
    from aidsafe.pipeline import Program, compile_recipe
    from aidsafe.runtime import RunOptions, RunSummary, run
    from aidsafe.store import Cache


def __getattr__(name: str) -> Any:
    """Load a public name on first access."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aidsafe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
