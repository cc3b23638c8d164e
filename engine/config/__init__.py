"""Recipes and policy sets: YAML -> JSON Schema -> plain spec dataclasses.

One load path with line-numbered errors. Nothing here imports DSPy, so
``aidsafe validate`` and ``--help`` stay fast.
"""

from aidsafe._util.lazy import lazy_exports

__all__ = ["AgentSpec", "FieldSpec", "ModelSpec", "PolicySet", "Recipe", "StageSpec", "load_policy_set",
           "load_prompts", "load_recipe"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "AgentSpec": "._specs", "FieldSpec": "._specs", "ModelSpec": "._specs", "Recipe": "._specs",
    "StageSpec": "._specs", "load_recipe": "._recipe", "PolicySet": "._policies",
    "load_policy_set": "._policies", "load_prompts": "._prompts",
})
