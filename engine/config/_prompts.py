"""Optimized prompts as data: per agent, its instructions and demos, in one
readable, diffable JSON file (``<folder>/prompts.json``). ``aidsafe optimize``
writes it; a recipe uses it with ``prompts: <folder>``."""

from __future__ import annotations

import json
from pathlib import Path

from aidsafe._util import paths
from aidsafe._util.errors import UserError

PROMPTS_FILE = "prompts.json"


def prompts_path(recipe) -> Path:
    """``<folder>/prompts.json``, the folder relative to the recipe file that
    declared ``prompts:`` (a variant elsewhere inherits its parent's folder)."""
    return _prompts_file(recipe.prompts, recipe.located, recipe.path)


def declared_folder(located, key: tuple, recipe_path: Path) -> Path:
    """The folder of the recipe file that wrote ``key`` (a variant that
    does not repeat it inherits its parent's): relative paths in it resolve
    from there."""
    where = located.lines.get(key) if located is not None else None
    declared_in = Path(where[0]) if where else recipe_path
    if not declared_in.is_absolute():
        declared_in = paths.project_root() / declared_in
    return declared_in.parent


def resolve_data_file(ref: str, located, key: tuple, recipe_path: Path, what: str) -> Path:
    """A file or folder a recipe names at ``key``, resolved from the file
    that wrote it, inside the project or that file's or the recipe's folder
    (a :class:`UserError` otherwise)."""
    base = declared_folder(located, key, recipe_path)
    return paths.resolve_inside(ref, base, [paths.project_root(), base, recipe_path.parent], what)


def precedent_pool_path(recipe, agent: str) -> Path:
    """The pool file of ``agents.<agent>.demos.pool``."""
    return resolve_data_file(recipe.agents[agent].demos["pool"], recipe.located,
                             ("agents", agent, "demos", "pool"), recipe.path, "precedent pool")


def _prompts_file(ref: str, located, recipe_path: Path) -> Path:
    return resolve_data_file(ref, located, ("prompts",), recipe_path, "prompts folder") / PROMPTS_FILE


def read_prompts(ref: str, located, recipe_path: Path, agent_names) -> dict:
    """Resolve, read and check a recipe's ``prompts:`` folder (the one check
    ``validate`` and ``run`` share): a :class:`UserError` says what is wrong."""
    try:
        path = _prompts_file(ref, located, recipe_path)
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise UserError(f"prompts: {ref!r} is not a usable folder name ({exc})") from None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"prompts: {path} not found; run `aidsafe optimize` to create it "
                        "or remove the `prompts:` line") from None
    except (OSError, ValueError) as exc:  # a folder, unreadable, not UTF-8 or not JSON
        raise UserError(f"prompts: {path}: not readable JSON ({exc}); regenerate it with `aidsafe optimize`") from None
    if not isinstance(data, dict) or not isinstance(data.get("agents"), dict):
        raise UserError(f"prompts: {path}: expected {{\"agents\": {{NAME: {{instructions, demos}}}}}}")
    unknown = [name for name in data["agents"] if name not in agent_names]
    if unknown:
        raise UserError(f"prompts: {path}: agent(s) {', '.join(unknown)} are not in the recipe; "
                        "regenerate it with `aidsafe optimize` or remove those entries")
    return data


def load_prompts(recipe) -> dict:
    """Read the recipe's optimized prompts: ``{"agents": {name: {...}}}``."""
    try:
        return read_prompts(recipe.prompts, recipe.located, recipe.path, recipe.agents)
    except UserError as exc:
        raise UserError(f"{recipe.path.name}: {exc}") from None


def apply_prompts(program, prompts: dict) -> None:
    """Replace agents' instructions and demos with the optimized ones."""
    import dspy

    for stage in program.stage_modules():
        for agent in stage.agent_modules():
            entry = prompts["agents"].get(agent.spec.name)
            if not entry:
                continue
            if entry.get("instructions"):
                agent.predict.signature = agent.predict.signature.with_instructions(entry["instructions"])
            if "demos" in entry:
                agent.predict.demos = [dspy.Example(**d) for d in entry["demos"]]


def dump_prompts(program) -> dict:
    """The current instructions and demos of every agent in ``program``."""
    agents = {}
    for stage in program.stage_modules():
        for agent in stage.agent_modules():
            agents[agent.spec.name] = {
                "instructions": agent.predict.signature.instructions,
                "demos": [dict(d) for d in agent.predict.demos],
            }
    return {"recipe": program.recipe.name, "agents": agents}
