"""Models for commands that look at a recipe without running it (``show``,
``diff``, ``run --plan``, ``cache explain``).

:func:`inspection_models` builds the same :class:`~aidsafe.models.ModelHandle`
objects as :func:`aidsafe.models.build_models` (both through
:func:`~aidsafe.models._engine.make_handle`: a ``dspy.LM`` over a
:class:`~aidsafe.models.CachingEngine`), but the backend is :class:`InspectOnly`,
which refuses every call: no weights are loaded, no server is contacted, no
API key is read. Compiling a recipe with them gives a real
:class:`~aidsafe.pipeline.Program`, so stage cache-key components come from the
real key machinery.

Each handle carries a model *identity* (the ``model`` part of call and stage
cache keys). Two ways to get it:

* ``identity="spec"`` (default): derived from the model spec alone by
  :func:`spec_identity`. Nothing is touched. Two specs get equal identities
  exactly when the real backends would give equal ones, except that a local
  GGUF named by path is identified by its path, not its file hash (reading
  weights is what this mode avoids).
* ``identity="backend"``: asks the real backend (:func:`aidsafe.models._engine.backend_for`),
  so keys match a real run's byte for byte (``run --plan``, ``cache explain``).
  This may assemble the embedded model into the cache folder on first use and
  needs the API-key variable of remote models to be set.
"""

from __future__ import annotations

from pathlib import Path

from aidsafe.config._specs import ModelSpec, Recipe
from aidsafe.models._engine import (
    ModelHandle,
    apply_overrides,
    backend_for,
    endpoint_from_env,
    is_mock,
    make_handle,
    model_identity,
)
from aidsafe.store._cache import Cache

IDENTITY_MODES = ("spec", "backend")

# Defaults the local backend applies when the spec leaves them unset
# (aidsafe.models._engine._local_engine); they are part of a local model's identity.
_LOCAL_N_CTX = 4096
_LOCAL_REPEAT_PENALTY = 1.1


class InspectOnly:
    """A backend that cannot be called: inspection commands never need an answer."""

    def __init__(self, spec: ModelSpec, identity: dict):
        self.spec = spec
        self._identity = identity

    def identity(self) -> dict:
        return dict(self._identity)

    def complete(self, request):
        raise RuntimeError(f"model {self.spec.name!r} was built for inspection only and cannot be called")


def spec_identity(spec: ModelSpec) -> dict:
    """A model's cache identity from its spec alone (no backend is built).

    It holds what the real backends put in theirs: the model string and
    endpoint for remote models (like ``RemoteEngine.identity``), the model
    reference and the decoding settings that change answers for local ones
    (context size, repeat penalty, speculative decoding). Operational settings (concurrency, rate
    limits, retries, timeouts, threads, the API-key variable) are left out,
    as they are in real keys. Sampling parameters are keyed separately.
    """
    if spec.model.startswith("local:"):
        from aidsafe.models.local._speculative import parse_speculative

        identity = {"backend": "llama.cpp", "model": spec.model.split(":", 1)[1],
                    "n_ctx": spec.context or _LOCAL_N_CTX,
                    "repeat_penalty": spec.repeat_penalty or _LOCAL_REPEAT_PENALTY}
        speculative = parse_speculative(spec.speculative, spec.model)
        if speculative is not None:  # the draft model by reference (its file is not read here)
            identity["speculative"] = speculative.to_dict()
        return identity
    if spec.model.startswith("fake:"):
        return {"backend": "fake", "model": spec.model}
    if is_mock(spec.model):
        from aidsafe.testing.fake import DryRunEngine

        return DryRunEngine().identity()
    return {"backend": "remote", "model": spec.model,
            "api_base": spec.api_base or endpoint_from_env(spec.model) or "(provider default)"}


def inspection_models(recipe: Recipe, overrides: dict[str, str] | None = None, *, identity: str = "spec",
                      cache: Cache | None = None, api_base: str | None = None) -> dict[str, ModelHandle]:
    """Handles for every model of ``recipe`` that never call anything.

    ``overrides`` replaces model strings by name (like ``--model NAME=MODEL``),
    ``api_base`` the endpoint of remote models (``--api-base``);
    ``identity`` is ``"spec"`` or ``"backend"`` (see the module docstring);
    ``cache`` is attached to the engines (``run --plan`` reads stage entries
    through the program's cache; nothing is ever written through these
    models). Without one, a disabled cache is used.
    """
    if identity not in IDENTITY_MODES:
        raise ValueError(f"identity must be one of {IDENTITY_MODES}, got {identity!r}")
    cache = cache if cache is not None else Cache(Path("/nonexistent-aidsafe-inspect"), enabled=False)
    handles = {}
    for name, spec in apply_overrides(recipe.models, overrides, api_base).items():
        ident = spec_identity(spec) if identity == "spec" else model_identity(spec, backend_for(spec))
        handles[name] = make_handle(spec, InspectOnly(spec, ident), cache, name=name)
    return handles
