"""Where each model of a recipe goes once ``--model`` and ``--api-base``
apply: one line per model (name, backend, endpoint host, the agents it
serves), and a warning when some models point at a server while others stay
on the embedded CPU model. ``run``, ``run --plan``, ``compare`` and
``optimize`` print these before any call, so a user who pointed ``default``
at a server sees that ``judge`` did not follow. Nothing here builds a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from aidsafe.config._specs import ModelSpec, Recipe
from aidsafe.models._engine import apply_overrides, endpoint_from_env, expand_all, is_mock, is_remote


@dataclass(frozen=True)
class Route:
    """One model of a recipe as it will run."""

    name: str
    model: str
    backend: str  # "embedded CPU (llama.cpp)", "remote", "fake", the dry run's mock, or a plugin backend's name
    endpoint: str | None  # host[:port] of a remote model's server, "provider default" when none is set
    agents: tuple[str, ...]
    overridden: bool

    def line(self) -> str:
        where = f" @ {self.endpoint}" if self.endpoint else ""
        used = f"  (agents: {', '.join(self.agents)})" if self.agents else ""
        return f"  {self.name:<10} {self.model}  [{self.backend}{where}]{used}"


def _backend(spec: ModelSpec) -> tuple[str, str | None]:
    if spec.model.startswith("local:"):
        return "embedded CPU (llama.cpp)", None
    if spec.model.startswith("fake:"):
        return "fake", None
    if is_mock(spec.model):
        return "dry run: scripted answers, no model", None
    if not is_remote(spec.model):
        return spec.model.split(":", 1)[0], None
    base = spec.api_base or endpoint_from_env(spec.model)
    return "remote", (urlparse(base).netloc or base) if base else "provider default"


def routes(recipe: Recipe, overrides: dict[str, str] | None = None, api_base: str | None = None) -> list[Route]:
    """Each model of ``recipe`` after ``overrides`` (``--model``; ``*`` for
    all) and ``api_base`` (``--api-base``)."""
    overrides = expand_all(recipe.models, overrides)
    specs = apply_overrides(recipe.models, overrides, api_base)
    users: dict[str, list[str]] = {}
    for agent in recipe.agents.values():
        users.setdefault(agent.model, []).append(agent.name)
    for agent in recipe.agents.values():  # a precedent screen's embedder is a model too
        embedder = (agent.demos or {}).get("embedder") if isinstance(agent.demos, dict) else None
        if isinstance(embedder, str) and embedder in specs:
            users.setdefault(embedder, []).append(f"{agent.name} (embeddings)")
    out = []
    for name, spec in specs.items():
        backend, endpoint = _backend(spec)
        out.append(Route(name, spec.model, backend, endpoint, tuple(users.get(name, ())), name in overrides))
    return out


def routing_report(recipe: Recipe, overrides: dict[str, str] | None = None,
                   api_base: str | None = None) -> tuple[list[str], list[str]]:
    """(lines naming every model's route, warnings): a warning when the
    command line pointed some models at a server or another model and others
    stay on the embedded CPU model, naming them and the fix."""
    found = routes(recipe, overrides, api_base)
    lines = ["models:"] + [r.line() for r in found]
    warnings = []
    if overrides or api_base:
        moved = [r for r in found if r.overridden or (api_base and r.backend == "remote")]
        # a model only the precedent search embeds with stays local on purpose (it is small and fast)
        stayed = [r for r in found if r not in moved and r.backend.startswith("embedded")
                  and not (r.agents and all(a.endswith("(embeddings)") for a in r.agents))]
        if moved and stayed:
            target = next((r.model for r in moved), "MODEL")
            names = ", ".join(f"{r.name} ({r.model}{', agents ' + ', '.join(r.agents) if r.agents else ''})"
                              for r in stayed)
            fix = " ".join(f"--model {r.name}={target}" for r in stayed)
            warnings.append(f"warning: {names} stay{'s' if len(stayed) == 1 else ''} on the embedded CPU model "
                            f"while {', '.join(r.name for r in moved)} point{'s' if len(moved) == 1 else ''} at "
                            f"{target}; to move {'it' if len(stayed) == 1 else 'them'} too, add {fix} (or "
                            f"--model '*={target}' for every model)")
    return lines, warnings


__all__ = ["Route", "routes", "routing_report"]
