"""Stream records through a compiled recipe: bounded concurrency, a progress
bar, per-record status, resume, and atomic output."""

from __future__ import annotations

import time
import traceback
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import dspy

from aidsafe import __version__
from aidsafe.store._cache import Cache
from aidsafe.pipeline._compile import Program, compile_recipe
from aidsafe._util.errors import OutputParseError, UserError
from aidsafe.models._engine import ModelUsage, UsageMeter, build_models, metering
from aidsafe._util.paths import default_cache_dir
from aidsafe._util.progress import Progress
from aidsafe.config import Recipe, load_recipe
from aidsafe.runtime._records import InputRecord, Journal, count_inputs, read_inputs


@dataclass
class RunOptions:
    """Everything ``aidsafe run`` takes besides the recipe and files."""

    cache_dir: Path | None = None
    use_cache: bool = True
    workers: int | None = None
    model_overrides: dict[str, str] = field(default_factory=dict)
    field: str | None = None
    id_field: str | None = None
    limit: int | None = None
    retry_failed: bool = True
    max_failures: int | None = None
    progress: bool = True
    executor: str = "thread"  # or "ray"
    ray_address: str | None = None


@dataclass
class RunSummary:
    """What a run did; printed at the end and kept in the cache directory."""

    output: str
    total: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  # reason -> count
    resumed: int = 0
    usage: UsageMeter = field(default_factory=UsageMeter)
    stage_hits: int = 0
    stage_misses: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    aborted: str | None = None

    def to_dict(self) -> dict:
        return {"output": self.output, "total": self.total, "statuses": dict(self.statuses),
                "failures": dict(self.failures), "resumed": self.resumed, "models": self.usage.to_dict(),
                "stage_hits": self.stage_hits, "stage_misses": self.stage_misses,
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted, "aborted": self.aborted}

    def lines(self) -> list[str]:
        out = [f"{self.total} record(s) -> {self.output} in {self.seconds:.1f}s: "
               + ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
               + (f" ({self.resumed} already done)" if self.resumed else "")]
        for reason, n in self.failures.most_common():
            out.append(f"  failed: {n} x {reason}")
        out.append(f"  stages: {self.stage_hits} from cache, {self.stage_misses} computed")
        for model, u in sorted(self.usage.by_model.items()):
            out.append(f"  model {model}: {u.calls} call(s) ({u.cached_calls} cached), "
                       f"{u.input_tokens} in / {u.output_tokens} out tokens, {u.seconds:.1f}s in calls")
        if self.interrupted:
            out.append("  interrupted: rerun the same command to resume")
        if self.aborted:
            out.append(f"  aborted: {self.aborted}")
        return out


def prepare(recipe: Recipe | str | Path, options: RunOptions) -> tuple[Recipe, Program, Cache]:
    """Load (if needed), build models and compile."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    cache = Cache(options.cache_dir or default_cache_dir(), enabled=options.use_cache)
    models = build_models(recipe.models, cache, options.model_overrides)
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
    if run is not None:
        for stage_id, info in run.stage_info.items():
            tokens = sum(u["input_tokens"] + u["output_tokens"] for u in info["usage"].values())
            stages[stage_id] = {"seconds": info["seconds"], "tokens": tokens}
            for model, u in info["usage"].items():
                usage.record(model, ModelUsage(**u))
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
    if "preference" in state:
        record["preference"] = state["preference"]
    if item.meta:
        record["meta"] = item.meta
    if status == "filtered":
        record["filtered_reason"] = run.filtered
    record["error"] = error
    record["provenance"] = {
        "recipe": recipe.name, "recipe_hash": recipe.hash,
        "policy_set": program.policies.name, "policy_hash": program.policies.hash,
        "models": {name: h.identity for name, h in sorted(program.models.items())},
        "agents": {name: a.model for name, a in sorted(recipe.agents.items())},
        "tokens": {"input": total.input_tokens, "output": total.output_tokens},
        "calls": total.calls,
        "seconds": round(sum(s["seconds"] for s in stages.values()), 3),
        "stages": stages,
        "engine": f"aidsafe {__version__}",
    }
    return record


@dataclass
class Outcome:
    """A finished record plus what computing it cost in this run."""

    record: dict
    usage: dict = field(default_factory=dict)  # model -> ModelUsage fields, this run's calls
    stage_hits: int = 0
    stage_misses: int = 0


def process(item: InputRecord, program: Program) -> Outcome:
    """Run one record; never raises for a record-level problem."""
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
                run_ = program.run_record(item.prompt, record_id=item.id)
        except OutputParseError as exc:
            error = {"type": "OutputParseError", "message": str(exc), "stage": getattr(exc, "stage_id", None),
                     "raw": exc.raw}
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a record's failure must not stop the run
            error = {"type": type(exc).__name__, "message": str(exc)[:2000], "stage": getattr(exc, "stage_id", None),
                     "traceback": None if isinstance(exc, UserError) else traceback.format_exc(limit=6)[-4000:]}
    record = build_record(item, program, None if error else run_, error=error)
    hits = sum(1 for info in run_.stage_info.values() if info["cached"]) if run_ else 0
    misses = len(run_.stage_info) - hits if run_ else 0
    return Outcome(record, meter.to_dict(), hits, misses)


class ThreadExecutor:
    """Records in threads of this process, sharing one compiled program."""

    def __init__(self, program: Program, workers: int):
        self.program = program
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="aidsafe")

    def submit(self, item: InputRecord) -> Future:
        return self.pool.submit(process, item, self.program)

    def shutdown(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


def run(recipe: Recipe | str | Path, input_path: str | Path, output_path: str | Path,
        options: RunOptions | None = None, on_record: Callable[[dict], None] | None = None) -> RunSummary:
    """Run a recipe over an input file into ``output_path``. Resumes from a
    previous (interrupted) run of the same recipe on the same output."""
    options = options or RunOptions()
    started = time.perf_counter()
    recipe, program, cache = prepare(recipe, options)
    field_name = options.field or recipe.input_field
    id_field = options.id_field or recipe.id_field
    output = Path(output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(output)
    done = journal.load()
    summary = RunSummary(output=str(output))
    order: list[str] = []
    workers = options.workers or min((h.spec.concurrency or 1) for h in program.models.values())
    total = count_inputs(input_path) if options.limit is None else min(options.limit, count_inputs(input_path))
    bar = Progress(total, options.progress, unit="rec", desc="aidsafe")
    stop = False
    pending: set[Future] = set()

    def finish(outcome: Outcome) -> None:
        nonlocal stop
        record = outcome.record
        journal.append(record)
        for model, usage in outcome.usage.items():
            summary.usage.record(model, ModelUsage(**usage))
        summary.stage_hits += outcome.stage_hits
        summary.stage_misses += outcome.stage_misses
        summary.statuses[record["status"]] += 1
        if record["status"] == "failed":
            summary.failures[f"{record['error']['type']}: {_reason(record['error'])}"] += 1
            if options.max_failures is not None and sum(summary.failures.values()) > options.max_failures:
                summary.aborted = f"more than {options.max_failures} failed record(s) (--max-failures)"
                stop = True
        if on_record:
            on_record(record)
        bar.tick()

    def drain(block_until: int) -> None:
        while len(pending) > block_until:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                pending.discard(future)
                finish(future.result())

    if options.executor == "ray":
        from aidsafe.runtime._ray import RayExecutor

        executor = RayExecutor(recipe.path, options, workers)
    else:
        executor = ThreadExecutor(program, workers)
    try:
        for item in read_inputs(input_path, field_name, id_field, recipe.keep_fields, options.limit):
            if stop:
                break
            order.append(item.id)
            summary.total += 1
            prev = done.get(item.id)
            if prev and prev["recipe_hash"] == recipe.hash and prev["prompt"] == item.prompt and (
                    prev["status"] != "failed" or not options.retry_failed):
                summary.resumed += 1
                summary.statuses[prev["status"]] += 1
                bar.tick()
                continue
            drain(2 * max(1, workers) - 1)  # bounded in flight: memory does not grow with the input
            pending.add(executor.submit(item))
        drain(0)
    except KeyboardInterrupt:
        summary.interrupted = True
        for future in pending:
            future.cancel()
        executor.shutdown(cancel=True)
        for future in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                finish(future.result())
    finally:
        executor.shutdown()
        bar.close()
        complete = not summary.interrupted and summary.aborted is None
        journal.finalize(order, remove=complete)
        summary.seconds = time.perf_counter() - started
        cache.save_last_run({"recipe": recipe.name, **summary.to_dict()})
        cache.close()
    return summary


def _reason(error: dict) -> str:
    """A failure's category for the summary: stable across records."""
    if error.get("type") == "InputError":
        message = str(error.get("message", ""))
        return message.split(": ", 1)[1].split(" (")[0].split(";")[0][:60] if ": " in message else message[:60]
    return f"in stage {error.get('stage')}" if error.get("stage") else str(error.get("message", ""))[:60]
