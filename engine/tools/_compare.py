"""``aidsafe compare``: run several recipe variants on the same prompts and
compare them with the judges, side by side.

Every variant runs through :func:`engine.run.run` with one cache directory,
so a stage whose key is the same in two variants (same spec, agents, models,
policies and upstream content) is computed once: an ablation of the
deliberation rounds reuses the intents and initial-CoT stages of the first
variant. After each run its stage keys are walked again (as ``run --plan``
does) to report, per stage, how many results the variant took from the cache
(the entry is older than the run) and how many it computed.

The outputs are then judged (:func:`engine.evaluation.evaluate`, cached
calls) and every variant is compared with the first: the mean of each
metric with its bootstrap interval and the difference with a paired interval
over the prompts both variants scored. When the input has labels (the
recipes' ``input.label``), ``behavior`` (agreement with the labels, by string
match) is compared the same way, in the same table.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from aidsafe._util.errors import UserError
from aidsafe._util.paths import default_cache_dir
from aidsafe.config import Recipe, load_recipe
from aidsafe.evaluation._eval import (
    BEHAVIOR,
    BEHAVIOR_LABEL,
    BEHAVIOR_NOTE,
    EvalResult,
    MetricComparison,
    evaluate,
)
from aidsafe.evaluation._stats import CONFIDENCE
from aidsafe.models._inspect import inspection_models
from aidsafe.pipeline._compile import Program, compile_recipe
from aidsafe.runtime._records import read_inputs
from aidsafe.runtime._run import RunOptions, RunSummary, run
from aidsafe.store._cache import Cache
from aidsafe.tools._compare_manifest import write_compare_manifest

DEFAULT_OUT_DIR = "compare"


@dataclass
class StageReuse:
    """One stage of one variant: results taken from the cache, results
    computed by this run, and records that never reached the stage (failed
    or filtered earlier)."""

    reused: int = 0
    computed: int = 0
    not_reached: int = 0

    def to_dict(self) -> dict:
        return {"reused": self.reused, "computed": self.computed, "not_reached": self.not_reached}


def stage_reuse(program: Program, input_path: str | Path, limit: int | None, since: float) -> dict[str, StageReuse]:
    """Per stage, for the records of ``input_path``: how many stage results
    existed in the program's cache before ``since`` (reused) and how many
    were written after it (computed by the run that started then). Walks the
    stage keys like ``run --plan``; calls no model."""
    recipe = program.recipe
    out = {sid: StageReuse() for sid in program.stage_ids}
    components = {s.spec.id: program.stage_components(s) for s in program.stage_modules()}
    for item in read_inputs(input_path, recipe.input_field, recipe.id_field, [], limit):
        state = {"query": item.prompt} if not item.error else None
        for stage in program.stage_modules():
            reuse = out[stage.spec.id]
            hit = None
            if state is not None:
                key, _ = program.stage_key(stage, state, components[stage.spec.id])
                hit = program.cache.get_stage(key, count=False)
            if hit is None:
                reuse.not_reached += 1
                state = None
                continue
            if hit.get("created", 0) < since:
                reuse.reused += 1
            else:
                reuse.computed += 1
            state.update(hit["updates"])
            if hit.get("filtered"):
                state = None
    return out


@dataclass
class VariantRun:
    """One recipe variant: its run summary and, per stage, how many results
    came from the cache."""

    label: str
    recipe: Recipe
    output: Path
    stages: dict[str, StageReuse]
    summary: RunSummary

    @property
    def reused(self) -> int:
        """Stage results this variant took from the cache (computed by an
        earlier variant or an earlier run)."""
        return sum(s.reused for s in self.stages.values())

    @property
    def computed(self) -> int:
        return sum(s.computed for s in self.stages.values())

    def to_dict(self) -> dict:
        return {"label": self.label, "recipe": str(self.recipe.path), "recipe_hash": self.recipe.hash,
                "output": str(self.output), "run": self.summary.to_dict(),
                "stages": {sid: reuse.to_dict() for sid, reuse in self.stages.items()}}


@dataclass
class CompareResult:
    """Every variant's run and its judge comparison with the first."""

    variants: list[VariantRun]
    evaluations: list[EvalResult]  # variant i (i >= 1) vs variant 0
    metrics: list[str]
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def comparisons(self) -> list[list[MetricComparison]]:
        return [e.comparisons for e in self.evaluations]

    def to_dict(self) -> dict:
        return {"variants": [v.to_dict() for v in self.variants],
                "comparisons": [{"first": self.variants[0].label, "second": v.label,
                                 "metrics": [c.to_dict() for c in e.comparisons],
                                 "behavior": e.behavior_comparison.to_dict() if e.behavior_comparison else None,
                                 "pairwise": [p.to_dict() for p in e.pairwise]}
                                for v, e in zip(self.variants[1:], self.evaluations)],
                "seconds": round(self.seconds, 1), "warnings": self.warnings}

    def tables(self):
        """Runs and stage reuse, then the judge scores side by side."""
        from aidsafe.evaluation._report import Table

        runs = []
        for v in self.variants:
            s = v.summary
            total = s.usage.total()
            runs.append([v.label, str(s.total), str(s.statuses.get("ok", 0)), str(s.statuses.get("filtered", 0)),
                         str(s.statuses.get("failed", 0)), str(v.reused), str(v.computed),
                         str(total.calls - total.cached_calls), f"{s.seconds:.1f}"])
        tables = [Table("Runs", ["variant", "records", "ok", "filtered", "failed", "stage results reused",
                                 "stage results computed", "new LM calls", "seconds"], runs,
                        notes=["reused: stage results that were in the cache before the variant ran "
                               "(from an earlier variant, or an earlier run)"])]
        stage_ids = list(dict.fromkeys(sid for v in self.variants for sid in v.stages))
        reuse_rows = []
        for sid in stage_ids:
            row = [sid]
            for v in self.variants:
                reuse = v.stages.get(sid)
                row.append("-" if reuse is None else f"{reuse.reused}/{reuse.reused + reuse.computed}")
            reuse_rows.append(row)
        tables.append(Table("Stage results reused from the cache (reused / records that reached the stage)",
                            ["stage"] + [v.label for v in self.variants], reuse_rows))
        if self.evaluations:
            tables.append(self._scores_table())
            for evaluation in self.evaluations:
                tables += [t for t in evaluation.tables() if t.title.startswith("Pairwise")]
        return tables

    def charts(self):
        """The judge means of every variant with their intervals."""
        from aidsafe.evaluation._report import Chart

        if not self.evaluations or not self.metrics:
            return []
        series = {self.variants[0].label: [(c.first.interval.mean, c.first.interval.low, c.first.interval.high)
                                           for c in self.evaluations[0].comparisons]}
        for v, evaluation in zip(self.variants[1:], self.evaluations):
            series[v.label] = [(c.second.interval.mean, c.second.interval.low, c.second.interval.high)
                               for c in evaluation.comparisons]
        return [Chart("Judge scores (mean, 95% CI)", list(self.metrics), series, ylabel="score",
                      ylim=self.evaluations[0].scale)]

    def _scores_table(self):
        from aidsafe.evaluation._report import Table

        ci = f"{int(CONFIDENCE * 100)}% CI"
        first = self.variants[0].label
        columns = ["metric", f"{first} [{ci}]"]
        for v in self.variants[1:]:
            columns += [f"{v.label} [{ci}]", f"{v.label} - {first} [paired {ci}]"]
        rows = []
        for m, metric in enumerate(self.metrics):
            base = self.evaluations[0].comparisons[m].first
            row = [metric, _mean_ci(base.interval)]
            for evaluation in self.evaluations:
                c = evaluation.comparisons[m]
                row += [_mean_ci(c.second.interval), _diff_ci(c.difference, c.paired)]
            rows.append(row)
        base = self.evaluations[0].comparisons
        scored = [f"{first} " + "/".join(str(c.first.n) for c in base)]
        unscored = [f"{first} " + "/".join(str(c.first.unscored) for c in base)]
        for v, evaluation in zip(self.variants[1:], self.evaluations):
            scored.append(f"{v.label} " + "/".join(str(c.second.n) for c in evaluation.comparisons))
            unscored.append(f"{v.label} " + "/".join(str(c.second.unscored) for c in evaluation.comparisons))
        notes = [f"each variant is compared with the first ({first}); differences are paired over the prompts "
                 "both scored (unpaired when fewer than two)",
                 "records scored per metric: " + "; ".join(scored),
                 "unscored verdicts per metric: " + "; ".join(unscored)]
        behavior = [e.behavior_comparison for e in self.evaluations]
        if all(b is not None for b in behavior):
            row = [BEHAVIOR_LABEL, _mean_ci(behavior[0].first.interval)]
            counts = [f"{first} {behavior[0].first.n}"]
            for v, b in zip(self.variants[1:], behavior):
                row += [_mean_ci(b.second.interval), _diff_ci(b.difference, b.paired)]
                counts.append(f"{v.label} {b.second.n}")
            rows.append(row)
            notes += [f"{BEHAVIOR} n (labeled ok records): " + "; ".join(counts), BEHAVIOR_NOTE]
        return Table("Judge scores, side by side", columns, rows, notes)

    def lines(self) -> list[str]:
        out = []
        for v in self.variants:
            out.append(f"{v.label}: {v.summary.total} record(s) -> {v.output}; stage results: {v.reused} reused "
                       f"from the cache, {v.computed} computed")
        if self.evaluations:
            out.append(f"scores written to {self.evaluations[0].scored_paths[0]}")
            out += [f"scores written to {e.scored_paths[1]}" for e in self.evaluations]
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _mean_ci(interval) -> str:
    if interval.mean is None:
        return "n/a"
    return f"{interval.mean:.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def _diff_ci(interval, paired: bool) -> str:
    if interval.mean is None:
        return "n/a"
    text = f"{interval.mean:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]"
    return text if paired else text + " (unpaired)"


def _labels(recipes: Sequence[Recipe]) -> list[str]:
    """Names for the variants: the recipe name, else the file stem, else
    numbered; safe as file names."""
    labels = []
    for recipe in recipes:
        for candidate in (recipe.name, recipe.path.stem):
            label = re.sub(r"[^A-Za-z0-9._-]+", "-", candidate).strip("-.") or "recipe"
            if label not in labels:
                break
        n = 2
        base = label
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.append(label)
    return labels


def compare_recipes(recipes: Sequence[str | Path | Recipe], input_path: str | Path, judges: str | Path = "judges",
                    judge_model: str | None = None, metrics: Sequence[str] | None = None,
                    pairwise: Sequence[str] = (), limit: int | None = None, out_dir: str | Path | None = None,
                    model_overrides: dict[str, str] | None = None, cache_dir: str | Path | None = None,
                    use_cache: bool = True, workers: int | None = None, judge_api_base: str | None = None,
                    judge_api_key_env: str | None = None,
                    progress: bool = False) -> CompareResult:
    """Run each recipe on ``input_path`` (the first ``limit`` prompts) into
    ``out_dir/<label>.jsonl`` with one shared cache, judge the outputs, and
    compare every variant with the first."""
    started = time.perf_counter()
    if len(recipes) < 2:
        raise UserError(f"compare needs at least two recipes (the first is the baseline); got {len(recipes)}")
    if not Path(input_path).is_file():
        raise UserError(f"input file {str(input_path)!r} not found")
    loaded = [r if isinstance(r, Recipe) else load_recipe(r) for r in recipes]
    seen: dict[Path, int] = {}
    for i, recipe in enumerate(loaded):
        if recipe.path in seen:
            raise UserError(f"{recipe.path.name} is given twice (variants {seen[recipe.path] + 1} and {i + 1}); "
                            "compare different recipes")
        seen[recipe.path] = i
    labels = _labels(loaded)
    out_dir = Path(out_dir or DEFAULT_OUT_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    all_overrides = dict(model_overrides or {})
    unused = [name for name in all_overrides if name != "*" and not any(name in r.models for r in loaded)]
    if unused:
        from aidsafe._util.registry import suggest

        known = sorted({name for r in loaded for name in r.models})
        raise UserError(f"--model names {unused[0]!r}, which no recipe declares{suggest(unused[0], known)}; "
                        f"models: {', '.join(known)}")
    notes = []
    # The order first, so `aidsafe view OUT_DIR` shows the baseline first even while the runs go on.
    write_compare_manifest(out_dir, [{"label": label, "recipe": str(recipe.path), "recipe_hash": recipe.hash,
                                      "output": f"{label}.jsonl"} for label, recipe in zip(labels, loaded)])
    variants = []
    for label, recipe in zip(labels, loaded):
        # --model NAME=... applies to the recipes that have NAME; the others are said, not refused
        overrides = {name: model for name, model in all_overrides.items() if name == "*" or name in recipe.models}
        missing = [name for name in all_overrides if name not in overrides]
        if missing:
            notes.append(f"{label}: has no model {', '.join(map(repr, missing))}; "
                         f"--model {' '.join(f'{n}=...' for n in missing)} does not apply to it")
        output = out_dir / f"{label}.jsonl"
        # compare's outputs are its own: computed again (from the shared cache), never resumed across models
        options = RunOptions(cache_dir=cache_dir, use_cache=use_cache, workers=workers, model_overrides=overrides,
                             limit=limit, progress=progress, force_restart=True)
        since = time.time()
        summary = run(recipe, input_path, output, options)
        if summary.interrupted:
            raise KeyboardInterrupt
        # Which stage results the run found in the cache (from the variants
        # before it) and which it wrote: an entry's age tells, even for a
        # stage after a changed one whose input came out identical.
        cache = Cache(cache_dir, enabled=use_cache)
        try:
            program = compile_recipe(recipe, inspection_models(recipe, overrides, identity="backend", cache=cache),
                                     cache=cache)
            stages = stage_reuse(program, input_path, limit, since)
        finally:
            cache.close()
        variants.append(VariantRun(label, recipe, output, stages, summary))
    result = CompareResult(variants=variants, evaluations=[], metrics=[])
    result.warnings += notes + list(dict.fromkeys(f"{v.label}: {w.removeprefix('warning: ')}" for v in variants
                                                  for w in v.summary.warnings))
    if not use_cache:
        result.warnings.append("--no-cache: the variants shared no stage results and none are counted")
    for v in variants:
        if v.summary.statuses.get("failed"):
            result.warnings.append(f"{v.label}: {v.summary.statuses['failed']} record(s) failed; they are not judged")
    for v in variants[1:]:
        evaluation = evaluate([variants[0].output, v.output], judges=judges, judge_model=judge_model,
                              metrics=metrics or None, pairwise=list(pairwise), output_dir=out_dir,
                              cache_dir=cache_dir, use_cache=use_cache, workers=workers, api_base=judge_api_base,
                              api_key_env=judge_api_key_env,
                              progress=progress)
        result.evaluations.append(evaluation)
        result.warnings += [w for w in evaluation.warnings if w not in result.warnings]
    result.metrics = [c.metric for c in result.evaluations[0].comparisons]
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["CompareResult", "DEFAULT_OUT_DIR", "VariantRun", "compare_recipes"]
