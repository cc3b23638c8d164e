"""Stream records through a compiled recipe: bounded concurrency, a progress
bar, per-record status, resume, and atomic output."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aidsafe._util.errors import UserError
from aidsafe._util.lock import LockHeld, exclusive_lock
from aidsafe._util.paths import make_parent, refuse_overwrite
from aidsafe._util.progress import Progress
from aidsafe.config import Recipe, load_recipe
from aidsafe.models._engine import ModelUsage, UsageMeter
from aidsafe.pipeline._compile import Program
from aidsafe.runtime._process import Outcome, RunOptions, prepare, process
from aidsafe.runtime._records import InputRecord, Journal, check_id_field, count_inputs, iter_rows, read_inputs


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
    warnings: list = field(default_factory=list)  # model routing the user may not have meant

    def to_dict(self) -> dict:
        return {"output": self.output, "total": self.total, "statuses": dict(self.statuses),
                "failures": dict(self.failures), "resumed": self.resumed, "models": self.usage.to_dict(),
                "stage_hits": self.stage_hits, "stage_misses": self.stage_misses,
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted, "aborted": self.aborted}

    def lines(self) -> list[str]:
        counts = [f"{n} {s}" for s, n in sorted(self.statuses.items())]
        unfinished = self.total - sum(self.statuses.values())
        if unfinished > 0 or not counts:  # Ctrl-C or an abort: say what was left, never an empty list
            counts.append(f"{max(unfinished, 0)} not finished")
        out = [f"{self.total} record(s) -> {self.output} in {self.seconds:.1f}s: " + ", ".join(counts)
               + (f" ({self.resumed} already done)" if self.resumed else "")]
        for reason, n in self.failures.most_common():
            out.append(f"  failed: {n} x {reason}")
        out.append(f"  stages: {self.stage_hits} from cache, {self.stage_misses} computed")
        for model, u in sorted(self.usage.by_model.items()):
            out.append(f"  model {model}: {u.calls} call(s) ({u.cached_calls} cached), "
                       f"{u.input_tokens} in / {u.output_tokens} out tokens, "
                       f"{u.input_tokens - u.cached_input_tokens} prompt tokens evaluated "
                       f"({u.cached_input_tokens} reused from the server's prefix cache), {u.seconds:.1f}s in calls")
        if self.interrupted:
            out.append("  interrupted: rerun the same command to resume")
        if self.aborted:
            out.append(f"  aborted: {self.aborted}")
        out += [f"  {w}" for w in self.warnings]
        return out


class ThreadExecutor:
    """Records in threads of this process, sharing one compiled program."""

    def __init__(self, program: Program, workers: int):
        self.program = program
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="aidsafe")

    def submit(self, item: InputRecord) -> Future:
        return self.pool.submit(process, item, self.program)

    def shutdown(self, cancel: bool = False) -> None:
        # On Ctrl-C (cancel) nothing waits for the calls in flight: a server
        # that never answers must not hold the run. Their threads finish, or
        # time out, on their own; the CLI exits without joining them.
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


def run(recipe: Recipe | str | Path, input_path: str | Path, output_path: str | Path,
        options: RunOptions | None = None, on_record: Callable[[dict], None] | None = None) -> RunSummary:
    """Run a recipe over an input file into ``output_path``. Resumes from a
    previous (interrupted) run of the same recipe on the same output.

    The output is locked (``OUT.lock`` beside the file it resolves to) for
    the whole run: a second run on the same output, by any name or link,
    raises a :class:`UserError` naming the first one's pid. An output that
    is a file the run reads (the input, the recipe and its parents, the
    policies, prompts or precedent pools) is a :class:`UsageError`."""
    options = options or RunOptions()
    label = recipe.name if isinstance(recipe, Recipe) else Path(recipe).name  # as the user named it
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    shown = Path(output_path)
    check_output_path(shown, input_path, *recipe.files_read())
    # Named after the file the path resolves to: a link to the output and
    # the output itself share one lock, one journal, and the link stays a link.
    output = shown.resolve()
    with _output_lock(output, shown):
        summary = _run(recipe, input_path, output, options, on_record, label, shown)
    summary.output = str(shown)
    return summary


def check_output_path(output: Path, *protected: str | Path | None) -> None:
    """Refuse an output that would overwrite ``protected`` files (the input,
    the recipe, ...), also through another path or a link; make its folder."""
    refuse_overwrite(output, protected, "output")
    make_parent(output)
    try:
        folder = output.is_dir()
    except OSError as exc:  # a name too long for the file system
        raise UserError(f"output {output}: not a usable file name ({exc.strerror or exc}); "
                        "choose a shorter name") from None
    if folder:
        raise UserError(f"output {output} is a folder; give a file path, e.g. {output / 'out.jsonl'}")


@contextlib.contextmanager
def _output_lock(output: Path, shown: Path | None = None):
    shown = shown or output
    lock = output.with_name(output.name + ".lock")
    held = contextlib.ExitStack()
    try:
        held.enter_context(exclusive_lock(lock))
    except LockHeld as exc:
        holder = f"pid {exc.pid}" if exc.pid else "another process"
        raise UserError(f"output {shown} is being written by another run ({holder}, lock {lock}); "
                        "wait for it to finish or choose another output") from None
    except PermissionError as exc:
        raise UserError(f"output {shown}: cannot write in {output.parent} ({exc.strerror}); "
                        "choose a folder you can write to") from None
    except OSError as exc:  # /proc, a name too long for the file system, a read-only mount
        raise UserError(f"output {shown}: cannot create its lock file {lock} ({exc.strerror or exc}); "
                        "choose another output path") from None
    with held:
        yield


def _run(recipe, input_path, output: Path, options: RunOptions, on_record, label: str | None = None,
         shown: Path | None = None) -> RunSummary:
    started = time.perf_counter()
    rows = count_inputs(input_path)
    if rows == 0:
        next(iter_rows(input_path), None)  # a file that cannot be read says so (a broken parquet counts 0)
        raise UserError(f"input {input_path} has no rows: nothing to run; give a file with one prompt per line "
                        "(JSONL), row (CSV) or item (JSON array)")
    total = rows if options.limit is None else min(options.limit, rows)
    check_named_id_field(recipe, input_path, options)
    # Live from the first second: weights are verified and models load
    # before the first record, and a local model's first record takes minutes.
    bar = Progress(total, options.progress, unit="rec", desc="aidsafe", interval=options.progress_interval, live=True)
    name = label or (recipe.name if isinstance(recipe, Recipe) else Path(recipe).name)
    bar.say(f"{name}: {total} record(s) from {input_path} -> {shown or output}; preparing models")
    try:
        if not isinstance(recipe, Recipe):
            recipe = load_recipe(recipe)
        warnings = announce_models(recipe, options.model_overrides, options.api_base, bar.say, quiet=options.progress)
        recipe, program, cache = prepare(recipe, options)
        summary = _run_prepared(recipe, program, cache, input_path, output, options, on_record, bar, total, started)
        summary.warnings = warnings
        return summary
    finally:
        bar.close()  # again after a normal end (closing twice is harmless): stops the heartbeat on any error


def check_named_id_field(recipe: Recipe, input_path, options: RunOptions) -> None:
    """An id field the user named (``--id-field``, or ``input.id_field`` in
    the recipe) must be a column of the input; the default ``id`` may be
    missing (records are then numbered by row)."""
    if options.id_field:
        check_id_field(input_path, options.id_field, "--id-field")
    elif "id_field" in (recipe.data.get("input") or {}):
        check_id_field(input_path, recipe.id_field, f"{recipe.path}: input.id_field")


def _run_prepared(recipe, program, cache, input_path, output, options, on_record, bar, total, started) -> RunSummary:
    field_name = options.field or recipe.input_field
    id_field = options.id_field or recipe.id_field
    journal = Journal(output)
    if options.force_restart:
        journal.path.unlink(missing_ok=True)  # the earlier records go; the output is replaced at the end
        done = {}
    else:
        done = journal.load()
        try:
            check_same_run(done, program, output)
        except UserError:
            cache.close()
            raise
    summary = RunSummary(output=str(output))
    order: list[str] = []
    workers = options.workers or min((h.spec.concurrency or 1) for h in program.models.values())
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
    inline = options.executor != "ray" and cache.enabled
    try:
        for item in read_inputs(input_path, field_name, id_field, recipe.keep_fields, options.limit,
                                spec=recipe.input):
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
            if inline:
                # A record whose every stage is in the cache costs a few reads
                # (an unreadable input row none): done here, it skips the
                # pool's hand-offs, where many threads on few cores queue for
                # the GIL around each read. A record with a stage to compute
                # goes to the workers as before.
                outcome = process(item, program, cache_only=True)
                if outcome is not None:
                    finish(outcome)
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
        executor.shutdown(cancel=summary.interrupted)
        bar.close()
        complete = not summary.interrupted and summary.aborted is None
        journal.finalize(order, remove=complete)
        summary.seconds = time.perf_counter() - started
        cache.save_last_run({"recipe": recipe.name, **summary.to_dict()})
        cache.close()
    return summary


def check_same_run(done: dict[str, dict], program: Program, output: Path) -> None:
    """Refuse to resume ``output`` when its records were made by other models
    (their identities, as the call cache keys them) or under another policy
    text: one output never mixes runs. The fix: ``--force-restart`` or a new
    ``-o``."""
    import json

    def text(value) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    def same(a, b) -> bool:
        return text(a) == text(b)

    models = {name: handle.identity for name, handle in sorted(program.models.items())}
    current = text(models)
    fix = (f"to start {output} again with the new setting, rerun with --force-restart (its records are "
           f"replaced); to keep them, write to a new output, e.g. -o {output.with_suffix('')}-2.jsonl")
    for record_id, prev in done.items():
        old = prev.get("models")
        if isinstance(old, dict) and text(old) != current:
            changed = [name for name in sorted(set(old) | set(models)) if not same(old.get(name), models.get(name))]
            detail = "; ".join(f"{name}: {_model_text(old.get(name))} -> {_model_text(models.get(name))}"
                               for name in changed)
            raise UserError(f"{output} holds records made by other models (record {record_id!r}: {detail}); "
                            f"resuming would mix two models' records in one file; {fix}")
        if prev.get("policy_hash") and prev["policy_hash"] not in program.policies.known_hashes:
            raise UserError(f"{output} holds records made under another policy text (record {record_id!r}: "
                            f"policy hash {prev['policy_hash'][:12]}, now {program.policies.hash[:12]} for "
                            f"{program.policies.name!r}); resuming would mix them; {fix}")


def _model_text(identity) -> str:
    if not isinstance(identity, dict):
        return "(none)"
    text = str(identity.get("model", identity)) + (" (the --dry-run mock)" if identity.get("dry_run") else "")
    base = identity.get("api_base")
    return f"{text} @ {base}" if base and base != "(provider default)" else text


def announce_models(recipe: Recipe, overrides: dict | None, api_base: str | None, say: Callable[[str], None],
                    quiet: bool = False) -> list[str]:
    """Say where every model of ``recipe`` goes (``say``, with the progress)
    before anything is built, and warn on stderr, also without progress, when
    some models point at a server and others stay on the embedded CPU model.
    Returns the warnings (the run's summary repeats them)."""
    import sys

    from aidsafe.models._routing import routing_report

    lines, warnings = routing_report(recipe, overrides, api_base)
    for line in lines:
        say(line.strip() if line.startswith("  ") else line)
    for warning in warnings:
        say(warning)
        if not quiet:
            print(warning, file=sys.stderr)
    return warnings


def _reason(error: dict) -> str:
    """A failure's category for the summary: stable across records."""
    if error.get("type") == "InputError":
        message = str(error.get("message", ""))
        return message.split(": ", 1)[1].split(" (")[0].split(";")[0][:60] if ": " in message else message[:60]
    return f"in stage {error.get('stage')}" if error.get("stage") else str(error.get("message", ""))[:60]
