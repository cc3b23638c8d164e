"""One record through a compiled program, and what a run needs to set one
up (``RunOptions``, ``prepare``). Used by the run loop in this process and by
Ray workers in others, so it imports neither of them."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from aidsafe import __version__
from aidsafe._util.errors import OutputParseError, UserError
from aidsafe._util.paths import default_cache_dir
from aidsafe._util.progress import LOG_INTERVAL
from aidsafe._util.redact import redact, redact_error
from aidsafe.config import Recipe, load_recipe
from aidsafe.models._engine import ModelUsage, UsageMeter, build_models, metering
from aidsafe.pipeline._compile import Program, compile_recipe
from aidsafe.pipeline._contract import ALWAYS_KEPT
from aidsafe.runtime._records import InputRecord, writable_record
from aidsafe.store._cache import Cache


@dataclass
class RunOptions:
    """Everything ``aidsafe run`` takes besides the recipe and files."""

    cache_dir: Path | None = None
    use_cache: bool = True
    workers: int | None = None
    model_overrides: dict[str, str] = field(default_factory=dict)
    api_base: str | None = None  # endpoint of every remote model (--api-base)
    field: str | None = None
    id_field: str | None = None
    limit: int | None = None
    retry_failed: bool = True
    max_failures: int | None = None
    progress: bool = True
    progress_interval: float = LOG_INTERVAL  # seconds between progress lines in a log (not a terminal)
    force_restart: bool = False  # drop the output's earlier records instead of resuming them
    executor: str = "thread"  # or "ray"
    ray_address: str | None = None


def prepare(recipe: Recipe | str | Path, options: RunOptions,
            write_behind: bool = True) -> tuple[Recipe, Program, Cache]:
    """Load (if needed), build models and compile. ``write_behind``: cache
    writes go through one writer thread (the run closes the cache, which
    flushes them); a Ray worker, which is never closed, writes directly."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    cache = Cache(options.cache_dir or default_cache_dir(), enabled=options.use_cache, write_behind=write_behind)
    models = build_models(recipe.models, cache, options.model_overrides, options.api_base)
    program = compile_recipe(recipe, models, cache=cache)
    return recipe, program, cache


def build_record(item: InputRecord, program: Program, run=None, error: dict | None = None) -> dict:
    """One output record. Everything in it is derived from the input and the
    (cached) stage results, so a warm rerun writes identical bytes."""
    recipe = program.recipe
    state = run.state if run is not None else {}
    if error is not None:
        status = "failed"
    elif run is not None and run.filtered:
        status = "filtered"
    else:
        status = "ok"
    usage = UsageMeter()
    stages = {}
    runtime: dict[str, dict] = {}
    if run is not None:
        for stage_id, info in run.stage_info.items():
            tokens = sum(u["input_tokens"] + u["output_tokens"] for u in info["usage"].values())
            stages[stage_id] = {"seconds": info["seconds"], "tokens": tokens}
            for model, u in info["usage"].items():
                usage.record(model, ModelUsage(**u))
            runtime.update(info.get("runtime") or {})
    total = usage.total()
    record: dict[str, Any] = {
        "id": item.id,
        "index": item.index,
        "status": status,
        "prompt": item.prompt,
        "intents": state.get("intents", []),
        "cot": state.get("thoughts", []),
        "response": state.get("response", ""),
    }
    # the input's own fields (columns, label), at the top level like the prompt
    record.update(item.fields)
    if "deliberation" in state:
        delib = dict(state["deliberation"])
        if recipe.output.get("include_log", True) is False:
            delib.pop("log", None)
        record["deliberation"] = delib
        record["stop_reason"] = delib["stop_reason"]
    if recipe.output.get("include_state"):
        record["initial"] = state.get("initial")
        record["all_thoughts"] = state.get("all_thoughts")
    if "removed" in state:
        record["removed"] = state["removed"]
    if state.get("extra"):
        record["extra"] = state["extra"]
    for key in ("refinement", "gate", "preference"):  # written by refine, gate, belief/pair stages
        if key in state:
            record[key] = state[key]
    if item.meta:
        record["meta"] = item.meta
    if status == "filtered":
        record["filtered_reason"] = run.filtered
    record["error"] = error
    record["provenance"] = {
        "recipe": recipe.name, "recipe_file": recipe.chain[0] if recipe.chain else None, "recipe_hash": recipe.hash,
        "policy_set": program.policies.name, "policy_hash": program.policies.hash,
        "models": {name: h.identity for name, h in sorted(program.models.items())},
        "agents": {name: a.model for name, a in sorted(recipe.agents.items())},
        "tokens": {"input": total.input_tokens, "output": total.output_tokens,
                   "input_evaluated": total.input_tokens - total.cached_input_tokens},
        "calls": total.calls,
        "seconds": round(sum(s["seconds"] for s in stages.values()), 3),
        "stages": stages,
        "engine": f"aidsafe {__version__}",
    }
    if any(h.identity.get("dry_run") for h in program.models.values()):
        # `run --dry-run` (a model is the scripted mock): these are no model's answers
        record["provenance"]["dry_run"] = True
    if item.source:  # the input set (name and content hash): dataset cards name it
        record["provenance"]["input"] = item.source
    if runtime:
        # How the models that answered ran (a local model's threads and poll,
        # and what `threads: auto` saw), from the stage results: not part of
        # the models' identities, which key the cache.
        record["provenance"]["runtime"] = dict(sorted(runtime.items()))
    if run is not None and run.skipped:
        record["provenance"]["skipped"] = run.skipped
    return select_fields(record, recipe.output)


def select_fields(record: dict, output: dict) -> dict:
    """Apply the recipe's ``output: {fields, rename}``: keep the listed
    fields in their order (a declared agent or ``predict`` output is lifted
    out of ``extra``; a listed field the record lacks is null), then rename.
    The bookkeeping keys (id, index, status, filtered_reason, error,
    provenance) are always kept as they are."""
    fields, rename = output.get("fields"), output.get("rename") or {}
    if fields is None and not rename:
        return record
    if fields is not None:
        extra = record.get("extra") or {}
        out = {k: record[k] for k in ("id", "index", "status")}
        for name in fields:
            if name not in ALWAYS_KEPT:
                out[name] = record[name] if name in record else extra.get(name)
        out.update({k: record[k] for k in ALWAYS_KEPT if k in record and k not in out})
        record = out
    return {rename.get(k, k): v for k, v in record.items()}


@dataclass
class Outcome:
    """A finished record plus what computing it cost in this run."""

    record: dict
    usage: dict = field(default_factory=dict)  # model -> ModelUsage fields, this run's calls
    stage_hits: int = 0
    stage_misses: int = 0


def process(item: InputRecord, program: Program, cache_only: bool = False) -> Outcome | None:
    """Run one record; never raises for a record-level problem.
    ``cache_only``: None unless every stage it reaches is in the stage cache
    (then the record costs a few reads and no model call)."""
    meter = UsageMeter()
    run_ = None
    error = None
    if item.error:
        error = {"type": "InputError", "message": item.error}
    else:
        try:
            # No DSPy history or trace in a run: they keep every call (and its
            # inputs) in memory, so memory would grow with the input.
            with metering(meter), dspy.context(trace=None, disable_history=True):
                run_ = program.run_record(item.prompt, record_id=item.id, cache_only=cache_only,
                                          fields=item.fields)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a record's failure must not stop the run
            if cache_only:  # not (all) cached, or anything else: the real run decides
                return None
            if isinstance(exc, UnicodeEncodeError) and "surrogate" in exc.reason:
                bad = exc.object[exc.start] if isinstance(exc.object, str) and exc.start < len(exc.object) else ""
                error = {"type": "InvalidText", "stage": getattr(exc, "stage_id", None),
                         "message": f"a model answer holds a lone surrogate (\\u{ord(bad or '?'):04x}), which is "
                                    "not valid Unicode text and cannot be stored as UTF-8; nothing of it was cached"}
            elif isinstance(exc, OutputParseError):
                error = {"type": "OutputParseError", "message": str(exc), "stage": getattr(exc, "stage_id", None),
                         "raw": exc.raw}
            else:
                # Redacted before cutting: a cut must not leave half a key behind.
                error = {"type": type(exc).__name__, "message": redact(str(exc))[:2000],
                         "stage": getattr(exc, "stage_id", None),
                         "traceback": None if isinstance(exc, UserError)
                         else redact(traceback.format_exc(limit=6))[-4000:]}
    # A provider may echo the key in its error: no secret reaches the record.
    record = build_record(item, program, None if error else run_, error=redact_error(error))
    # A lone surrogate (in a model's answer, say) cannot be written as UTF-8:
    # it fails this record, not the run.
    record = writable_record(record)
    hits = sum(1 for info in run_.stage_info.values() if info["cached"]) if run_ else 0
    misses = len(run_.stage_info) - hits if run_ else 0
    return Outcome(record, meter.to_dict(), hits, misses)
