"""Speculative decoding for the embedded model: a model entry's
``speculative:`` option, read, checked and applied to llama.cpp.

Two ways to guess tokens that the model then checks in one batch (a guess
the model would not have produced greedily is thrown away, so greedy output
is the same; only the speed changes):

* ``ngram``: prompt lookup. The last few tokens are looked up in the prompt
  and the answer so far, and what followed them there is proposed. Free when
  nothing matches; fast for roles that copy their input (the refiner copies
  thoughts word for word, revisers most of them).
* ``draft``: a smaller local model of the same tokenizer family proposes the
  tokens (``qwen-0.5b`` for ``qwen-1.5b``).

Spellings (``models: NAME: {model: local:..., speculative: ...}``)::

    speculative: {ngram: true}                               # defaults below (false: off)
    speculative: {ngram: {mode: simple, size: 4, max: 16, min_hits: 1}}
    speculative: {draft: qwen-0.5b}                          # a named model, local:NAME or a .gguf path
    speculative: {draft: {model: qwen-0.5b, max: 8, min: 0, p_min: 0.5}}

This module is plain Python (no xllamacpp import until :meth:`Speculation.apply`),
so the recipe loader uses it to check a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aidsafe._util.errors import ModelError

__all__ = ["DRAFT_DEFAULTS", "NGRAM_DEFAULTS", "NGRAM_MODES", "Speculation", "models_problems",
           "parse_speculative", "speculative_problems"]

# llama.cpp's n-gram speculators that need nothing but the context
# (``ngram-cache`` needs lookup files, ``ngram-mod`` another parameter set).
NGRAM_MODES = {"simple": "NGRAM_SIMPLE", "map-k": "NGRAM_MAP_K", "map-k4v": "NGRAM_MAP_K4V"}

# Chosen by measurement (performance/spec_bench.py, performance/README.md):
# an n-gram of 4 tokens proposing up to 16 was the fastest of those tried, on
# a plain-text copy (~1.8x) and on the shipped recipe's refiner and reviser
# calls (where no setting beat no speculation); llama.cpp's own default (12
# and 48) proposes far more tokens that are then rejected.
NGRAM_DEFAULTS: dict[str, Any] = {"mode": "simple", "size": 4, "max": 16, "min_hits": 1}
DRAFT_DEFAULTS: dict[str, Any] = {"max": 8, "min": 0, "p_min": 0.5}

_NGRAM_KEYS = {"mode": "simple|map-k|map-k4v", "size": "tokens matched, 1-64", "max": "most tokens proposed, 1-256",
               "min_hits": "times an n-gram must have been seen, >= 1"}
_DRAFT_KEYS = {"model": "a local model", "max": "most tokens drafted, 1-64", "min": "fewest tokens drafted, >= 0",
               "p_min": "least probability a drafted token needs, 0-1"}
_EXAMPLE = "e.g. `speculative: {ngram: true}` or `speculative: {draft: qwen-0.5b}`"


@dataclass(frozen=True)
class Speculation:
    """A model's speculative decoding, every default filled in.

    ``ngram``: ``(mode, size, max, min_hits)`` or None; ``draft``: the draft
    model's reference as written (a name or a ``.gguf`` path, without
    ``local:``) or None, with ``draft_max``, ``draft_min`` and ``p_min``.
    """

    ngram: tuple[str, int, int, int] | None = None
    draft: str | None = None
    draft_max: int = DRAFT_DEFAULTS["max"]
    draft_min: int = DRAFT_DEFAULTS["min"]
    p_min: float = DRAFT_DEFAULTS["p_min"]

    def to_dict(self, draft_identity: dict | None = None) -> dict[str, Any]:
        """The settings as a plain dict (for cache identities and provenance);
        ``draft_identity`` (the draft model's name and sha256) replaces the
        reference once the draft model is resolved."""
        out: dict[str, Any] = {}
        if self.ngram is not None:
            mode, size, most, hits = self.ngram
            out["ngram"] = {"mode": mode, "size": size, "max": most, "min_hits": hits}
        if self.draft is not None:
            out["draft"] = {"model": draft_identity if draft_identity is not None else self.draft,
                            "max": self.draft_max, "min": self.draft_min, "p_min": self.p_min}
        return out

    def describe(self) -> str:
        """``ngram simple 4/16`` or ``draft qwen-0.5b (max 8, p_min 0.5)`` for progress lines."""
        parts = []
        if self.ngram is not None:
            parts.append(f"ngram {self.ngram[0]} {self.ngram[1]}/{self.ngram[2]}")
        if self.draft is not None:
            parts.append(f"draft {self.draft} (max {self.draft_max}, p_min {self.p_min:g})")
        return ", ".join(parts)

    def apply(self, params, draft_path: str | None, threads: int, poll: int) -> None:
        """Set llama.cpp's ``CommonParams.speculative`` on ``params``."""
        import xllamacpp

        kinds = xllamacpp.common_speculative_type
        spec = params.speculative
        types = []
        if self.draft is not None:
            if not draft_path:
                raise ModelError(f"speculative draft {self.draft!r} was not resolved to a file")
            types.append(kinds.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE)
            draft = spec.draft
            draft.mparams.path = draft_path
            draft.n_max, draft.n_min, draft.p_min = self.draft_max, self.draft_min, float(self.p_min)
            # The draft model runs between the target's steps, never beside
            # them: the same threads, sleeping when idle.
            for cpu in (draft.cpuparams, draft.cpuparams_batch):
                cpu.n_threads, cpu.poll = int(threads), int(poll)
        if self.ngram is not None:
            mode, size, most, hits = self.ngram
            types.append(getattr(kinds, "COMMON_SPECULATIVE_TYPE_" + NGRAM_MODES[mode]))
            target = getattr(spec, NGRAM_MODES[mode].lower())
            target.size_n, target.size_m, target.min_hits = size, most, hits
        spec.types = types


def _int_in(value: Any, low: int, high: int | None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _local_ref(value: Any) -> str | None:
    """The reference of a draft model (``qwen-0.5b``, ``local:qwen-0.5b`` or a
    ``.gguf`` path), without ``local:``; None when it names no local model."""
    from aidsafe.models.local._weights import local_model_names

    if not isinstance(value, str) or not value.strip():
        return None
    ref = value.strip().removeprefix("local:")
    if ref in local_model_names() or ref.endswith(".gguf") or "/" in ref:
        return ref
    return None


def speculative_problems(value: Any, model: str | None = None) -> list[tuple[tuple, str]]:
    """Every problem of a ``speculative:`` value as ``(path below speculative,
    message with the fix)``; ``model`` is the entry's ``model:`` string."""
    from aidsafe.models.local._weights import _names_text, family_of

    problems: list[tuple[tuple, str]] = []
    if isinstance(model, str) and not model.startswith("local:"):
        problems.append(((), f"speculative decoding runs only in the embedded model (`model: local:...`); "
                             f"{model!r} is answered by a server: remove `speculative` (a server has its own "
                             "settings, e.g. vLLM's --speculative-config) or use a local model"))
        return problems
    if not isinstance(value, dict):  # (an empty one is the schema's to report)
        return [((), f"expected a mapping with `ngram` or `draft`, found {value!r}; {_EXAMPLE}")]
    for key in value:
        if key not in ("ngram", "draft"):
            problems.append(((key,), f"unknown key {key!r}; `speculative` takes `ngram` (prompt lookup) or "
                                     f"`draft` (a smaller model); {_EXAMPLE}"))
    if "ngram" in value and "draft" in value:
        problems.append(((), "give `ngram` or `draft`, not both (one way of guessing per model; "
                             "`ngram` suits roles that copy their input, `draft` a larger model)"))
    ngram = value.get("ngram")
    if "ngram" in value and not isinstance(ngram, bool):
        if not isinstance(ngram, dict):
            problems.append((("ngram",), f"expected true, false or a mapping of {', '.join(_NGRAM_KEYS)}, found {ngram!r}; "
                                         "e.g. `ngram: true` or `ngram: {size: 4, max: 16}`"))
        else:
            for key, text in _check(ngram, _NGRAM_KEYS, {
                    "mode": lambda v: v in NGRAM_MODES, "size": lambda v: _int_in(v, 1, 64),
                    "max": lambda v: _int_in(v, 1, 256), "min_hits": lambda v: _int_in(v, 1, None)}):
                problems.append((("ngram", key), text))
    draft = value.get("draft")
    if "draft" in value:
        options = draft if isinstance(draft, dict) else {"model": draft}
        if isinstance(draft, dict):
            for key, text in _check(draft, _DRAFT_KEYS, {
                    "model": lambda v: True, "max": lambda v: _int_in(v, 1, 64), "min": lambda v: _int_in(v, 0, 64),
                    "p_min": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1}):
                problems.append((("draft", key), text))
        where = ("draft", "model") if isinstance(draft, dict) else ("draft",)
        ref = _local_ref(options.get("model")) if "model" in options else ""
        target = model.removeprefix("local:") if isinstance(model, str) else None
        if ref is None:
            problems.append((where, f"{options.get('model')!r} is not a local model; the draft model is "
                                    f"{_names_text()}"))
        elif ref and target is not None:
            if _same_named(ref, target):
                problems.append((where, f"{target} cannot draft for itself; name a smaller model of the same "
                                        "tokenizer family (qwen-0.5b for qwen-1.5b), or use `ngram: true`"))
            elif family_of(ref) is not None and family_of(target) is not None and family_of(ref) != family_of(target):
                problems.append((where, f"draft model {ref} ({family_of(ref)}) and {target} ({family_of(target)}) "
                                        "have different tokenizers, so it cannot draft for it; name a model of the "
                                        f"{family_of(target)} family, or use `ngram: true`"))
    return problems


def models_problems(models: Any) -> list[tuple[tuple, str]]:
    """The problems of every ``speculative:`` in a ``models:`` mapping, each
    with its path from the document's root (for ``file:line`` errors)."""
    problems: list[tuple[tuple, str]] = []
    for name, entry in (models.items() if isinstance(models, dict) else ()):
        if isinstance(entry, dict) and "speculative" in entry:
            problems += [(("models", name, "speculative", *path), message)
                         for path, message in speculative_problems(entry["speculative"], entry.get("model"))]
    return problems


def _same_named(a: str, b: str) -> bool:
    """Whether two named references are one model (``default`` and ``qwen-0.5b``)."""
    from aidsafe.models.local._weights import DEFAULT_LOCAL_MODEL

    def canon(ref: str) -> str:
        return DEFAULT_LOCAL_MODEL if ref == "default" else ref

    return canon(a) == canon(b)


def _check(options: dict, known: dict, valid: dict) -> list[tuple[str, str]]:
    out = []
    for key, value in options.items():
        if key not in known:
            out.append((key, f"unknown key {key!r}; known: "
                             + ", ".join(f"{k} ({t})" for k, t in known.items())))
        elif not valid[key](value):
            out.append((key, f"{key} must be {known[key]}, found {value!r}"))
    return out


def parse_speculative(value: Any, model: str | None = None) -> Speculation | None:
    """The :class:`Speculation` a ``speculative:`` value asks for (None for
    none); raises ModelError naming the first problem and its fix."""
    if value is None:
        return None
    problems = speculative_problems(value, model)
    if problems:
        path, message = problems[0]
        where = ".".join(("speculative", *map(str, path)))
        raise ModelError(f"{where}: {message}")
    ngram = value.get("ngram")
    parsed_ngram = None
    if ngram is not None and ngram is not False:
        options = {**NGRAM_DEFAULTS, **(ngram if isinstance(ngram, dict) else {})}
        parsed_ngram = (options["mode"], options["size"], options["max"], options["min_hits"])
    draft = value.get("draft")
    if draft is None:
        return Speculation(ngram=parsed_ngram) if parsed_ngram is not None else None
    options = {**DRAFT_DEFAULTS, **(draft if isinstance(draft, dict) else {"model": draft})}
    return Speculation(ngram=parsed_ngram, draft=_local_ref(options["model"]), draft_max=options["max"],
                       draft_min=options["min"], p_min=float(options["p_min"]))
