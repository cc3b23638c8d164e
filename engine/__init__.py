"""aidsafe: a declarative engine for policy-embedded safety-reasoning data
(AIDSAFE: intent decomposition, multi-agent deliberation, refinement)."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# Nothing may reach the network or the home directory behind the user's back:
# LiteLLM would fetch its price map, and DSPy would create ~/.dspy_cache.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
if "DSPY_CACHEDIR" not in os.environ:
    from .paths import default_cache_dir as _default_cache_dir

    os.environ["DSPY_CACHEDIR"] = str(_default_cache_dir() / "dspy")

import dspy as _dspy  # noqa: E402

# One source of truth: our content-addressed cache. DSPy's is off.
_dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

from .cache import Cache  # noqa: E402
from .compile import Program, compile_recipe  # noqa: E402
from .errors import ModelError, OutputParseError, RecipeError, UserError  # noqa: E402
from .lm import build_models, register_engine  # noqa: E402
from .policies import PolicySet, load_policy_set  # noqa: E402
from .recipe import Recipe, load_recipe  # noqa: E402
from .run import RunOptions, RunSummary, run  # noqa: E402

__all__ = [
    "Cache", "ModelError", "OutputParseError", "PolicySet", "Program", "Recipe", "RecipeError", "RunOptions",
    "RunSummary", "UserError", "__version__", "build_models", "compile_recipe", "load_policy_set", "load_recipe",
    "register_engine", "run",
]
