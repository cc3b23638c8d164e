"""``aidsafe optimize``: tune a recipe's agents with a DSPy optimizer, using
LLM judges or the inputs' labels as the metric, and save the result as data.

The compiled recipe (:class:`engine.compile.Program`) is a ``dspy.Module``
whose predictors are the agents' ``dspy.Predict`` objects, so DSPy's own
optimizers (``BootstrapFewShot``, ``MIPROv2``, ``GEPA``, ``KNNFewShot``)
can tune it. What they change, each agent's instructions and demos, is
written to ``<out>/prompts.json`` (:func:`engine.prompts.dump_prompts`) with
a ``meta.json`` beside it; a recipe uses it with ``prompts: <out>``.
``KNNFewShot`` picks demos per query (the training prompts nearest to it),
which a static file cannot hold: it writes each agent's pool of accepted
demos to ``<out>/precedents/<agent>.jsonl`` for an agent's
``demos: {select: nearest, pool: ...}``.

The metric is one pointwise judge of a judges file, or a weighted sum of
several (``judges.yaml:faithfulness_policy_cot=0.7,relevance=0.3``): each
score is mapped from its scale to 0..1 and the weighted mean is the metric.
A verdict that is unscored (unparseable answer, failed call) or skipped (the
record was filtered) counts 0 and is counted, never guessed.

``--metric behavior`` needs no judge model: 1 when the response does what
the input's label asks (``answer``: full compliance, ``decline``: a full
refusal, by the string-match classifier
:func:`aidsafe.evaluation._refusal.behavior_agrees`), else 0. The labels are
read through the recipe's ``input.label``; rows labeled ``unknown`` are left
out of the training set. Deterministic and offline.

The prompts are split deterministically (by ``seed``) into a training part
and a validation part. The optimizer sees only the training part; the
validation part measures the metric before and after, so the reported gain
is on prompts the optimizer never saw.

Every example carries the record fields the recipe's ``input:`` gives (its
columns and label), and the program runs with them, as ``aidsafe run``
would.

Caching: judge calls, agent calls and proposal/reflection calls go through
the content-addressed call cache, so a rerun replays them. The stage cache is
not used: ``Program.forward`` runs every stage, since the optimizer changes
what the stages would compute.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import dspy

from aidsafe import __version__
from aidsafe._util import paths
from aidsafe._util.atomic import atomic_write
from aidsafe._util.errors import UserError
from aidsafe._util.paths import default_cache_dir
from aidsafe._util.redact import redact
from aidsafe._util.registry import suggest
from aidsafe.config import ModelSpec, Recipe, load_recipe
from aidsafe.config._prompts import PROMPTS_FILE, dump_prompts
from aidsafe.config._specs import InputSpec
from aidsafe.evaluation._judges import JudgePanel, Verdict, load_judges
from aidsafe.evaluation._refusal import behavior_agrees, classify_refusal
from aidsafe.evaluation._stats import Interval, bootstrap_difference, bootstrap_mean
from aidsafe.evaluation._tasks import run_tasks
from aidsafe.models._engine import build_models
from aidsafe.pipeline._compile import Program, compile_recipe
from aidsafe.runtime._records import read_inputs
from aidsafe.store._cache import Cache

OPTIMIZERS = ("bootstrap", "mipro", "gepa", "knn")
META_FILE = "meta.json"
PRECEDENTS_DIR = "precedents"
DEFAULT_METRIC = "judges:faithfulness_policy_cot"
BEHAVIOR = "behavior"  # --metric behavior: agreement with the inputs' labels, no judge
# Demos leave out the policy text: every call already carries the same text
# as its own input, and a copy per demo would fill a small model's context.
DEMO_DROP_FIELDS = ("policies",)


# ------------------------------------------------------------------ metric

@dataclass(frozen=True)
class MetricSpec:
    """A judges file and the pointwise judges that make the metric, with
    weights (normalised by their sum, so the metric stays in 0..1); or,
    with ``judges`` None, the label metric ``behavior``."""

    judges: str | None
    weights: dict[str, float]

    @property
    def uses_labels(self) -> bool:
        """Whether this is ``behavior``: the labels, no judge."""
        return self.judges is None

    def describe(self) -> str:
        if self.uses_labels:
            return BEHAVIOR
        return f"{self.judges}:" + ",".join(f"{name}={weight:g}" for name, weight in self.weights.items())


def parse_metric(text: str) -> MetricSpec:
    """``behavior`` (agreement with the inputs' labels, no judge), or
    ``FILE:JUDGE[=W][,JUDGE=W...]``, or ``JUDGE[=W],...`` for the shipped
    judges file. ``recipes/judges.yaml:faithfulness_policy_cot`` is one judge;
    ``judges.yaml:faithfulness_policy_cot=0.7,relevance=0.3`` a weighted sum.
    Judges without a weight get 1."""
    text = (text or "").strip()
    if text == BEHAVIOR:
        return MetricSpec(None, {BEHAVIOR: 1.0})
    example = "e.g. --metric recipes/judges.yaml:faithfulness_policy_cot=0.7,relevance=0.3"
    if ":" in text:
        judges, terms = text.rsplit(":", 1)
    else:
        judges, terms = "judges", text
    if not judges.strip() or not terms.strip():
        raise UserError(f"--metric {text!r}: expected FILE:JUDGE or FILE:JUDGE=WEIGHT,...; {example}")
    weights: dict[str, float] = {}
    for term in terms.split(","):
        name, _, weight = term.strip().partition("=")
        name = name.strip()
        if not name:
            raise UserError(f"--metric {text!r}: an empty judge name; {example}")
        if name in weights:
            raise UserError(f"--metric {text!r}: judge {name!r} is named twice; give it once with one weight")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise UserError(f"--metric {text!r}: weight {weight!r} of {name!r} is not a number; {example}") from None
        if not value > 0:
            raise UserError(f"--metric {text!r}: weight of {name!r} must be > 0, found {weight}")
        weights[name] = value
    return MetricSpec(judges.strip(), weights)


@dataclass
class MetricScore:
    """The metric for one prediction: ``value`` in 0..1, each judge's raw
    score (``None`` when not scored) and verdict status, and the judges'
    reasons (GEPA's reflection reads them as feedback)."""

    value: float
    scores: dict[str, int | None]
    statuses: dict[str, str]
    feedback: str


def _field(example, name: str):
    return example.get(name) if hasattr(example, "get") else example[name]


def _metric_call(self, example, prediction, trace=None, pred_name=None, pred_trace=None):
    """A metric as DSPy calls it: the value (0..1), or for GEPA's
    per-predictor calls (``pred_name`` given) the value with feedback."""
    result = self.measure(example, prediction)
    if pred_name is not None:
        return dspy.Prediction(score=result.value, feedback=result.feedback)
    return result.value


class JudgeMetric:
    """A DSPy metric built from judges: call it as ``metric(example,
    prediction[, trace[, pred_name, pred_trace]])``. It returns a float in
    0..1, or for GEPA's per-predictor calls (``pred_name`` given) a
    ``dspy.Prediction(score=..., feedback=...)`` whose feedback is the
    judges' reasons.

    Counts every call and every verdict that did not score (``unscored``:
    bad answer or failed call; ``skipped``: the record was filtered), since
    those count 0 in the metric."""

    def __init__(self, panel: JudgePanel, spec: MetricSpec):
        self.panel = panel
        self.spec = spec
        pointwise = panel.judge_set.names("pointwise")
        for name in spec.weights:
            judge = panel.judge_set.get(name)
            if judge.kind != "pointwise":
                raise UserError(f"--metric: judge {name!r} is {judge.kind}; the metric is built from pointwise "
                                f"judges ({', '.join(pointwise)})")
        self.total_weight = sum(spec.weights.values())
        self.calls = 0
        self.unscored: dict[str, int] = {name: 0 for name in spec.weights}
        self.skipped = 0
        self._lock = threading.Lock()

    def score(self, query: str, prediction: Any) -> MetricScore:
        """Judge one prediction of the program (``cot``, ``response``,
        ``filtered``) for ``query``."""
        record = {"prompt": query, "cot": prediction.get("cot"), "response": prediction.get("response"),
                  "status": "filtered" if prediction.get("filtered") else "ok"}
        total = 0.0
        scores, statuses, notes = {}, {}, []
        # Judges' own predictors must not land in the optimizer's trace.
        with dspy.context(trace=None):
            verdicts = {name: self.panel.score(name, record) for name in self.spec.weights}
        for name, verdict in verdicts.items():
            low, high = self.panel.judge_set.judges[name].scale
            statuses[name] = verdict.status
            scores[name] = verdict.value if verdict.scored else None
            if verdict.scored:
                total += self.spec.weights[name] * (verdict.value - low) / (high - low)
            notes.append(_feedback(name, verdict, high, prediction.get("filtered")))
        with self._lock:
            self.calls += 1
            if record["status"] != "ok":
                self.skipped += 1
            for name, status in statuses.items():
                if status in ("unscored", "error"):
                    self.unscored[name] += 1
        return MetricScore(total / self.total_weight, scores, statuses, "\n".join(notes))

    def measure(self, example, prediction) -> MetricScore:
        """:meth:`score` for a training example (reads its ``query``)."""
        return self.score(_field(example, "query"), prediction)

    __call__ = _metric_call


def _feedback(name: str, verdict: Verdict, high: int, filtered: str | None) -> str:
    if verdict.scored:
        return f"{name}: {verdict.value}/{high}. {verdict.reason or ''}".strip()
    if verdict.status == "skipped":
        return f"{name}: not judged ({filtered or verdict.note}); counts 0"
    return f"{name}: the judge gave no usable score ({verdict.note}); counts 0"


class BehaviorMetric:
    """``--metric behavior``: 1.0 when the prediction's response does what
    the example's ``label`` asks (``answer``: full compliance; ``decline``:
    a full refusal), else 0.0, by :func:`behavior_agrees` (string match;
    no judge model). Call it like :class:`JudgeMetric`; it counts calls and
    filtered records (which count 0) the same way."""

    def __init__(self):
        self.spec = MetricSpec(None, {BEHAVIOR: 1.0})
        self.calls = 0
        self.unscored: dict[str, int] = {BEHAVIOR: 0}
        self.skipped = 0
        self._lock = threading.Lock()

    def score(self, label: str | None, prediction: Any) -> MetricScore:
        """Check one prediction (``response``, ``filtered``) against ``label``."""
        filtered = prediction.get("filtered")
        agrees = None if filtered else behavior_agrees(label, prediction.get("response"))
        if filtered:
            status, note = "skipped", f"{BEHAVIOR}: not checked ({filtered}); counts 0"
        elif agrees is None:
            status, note = "unscored", f"{BEHAVIOR}: the example has no answer/decline label ({label!r}); counts 0"
        else:
            status = "scored"
            found = classify_refusal(prediction.get("response"))
            wanted = "a direct, complete answer with no refusal" if label == "answer" else \
                "a clear refusal that does not go on to help"
            note = (f"{BEHAVIOR}: the label asks to {label}; by string match the response is {found} "
                    f"({'agrees' if agrees else 'disagrees'}); expected {wanted}")
        with self._lock:
            self.calls += 1
            self.skipped += status == "skipped"
            self.unscored[BEHAVIOR] += status == "unscored"
        value = 1.0 if agrees else 0.0
        return MetricScore(value, {BEHAVIOR: int(value) if status == "scored" else None}, {BEHAVIOR: status}, note)

    def measure(self, example, prediction) -> MetricScore:
        """:meth:`score` for a training example (reads its ``label``)."""
        return self.score(_field(example, "label"), prediction)

    __call__ = _metric_call


# -------------------------------------------------------------------- data

@dataclass
class Split:
    """Training and validation prompts (``dspy.Example(query=..., **fields)``,
    the fields as inputs) with their input ids."""

    train: list[dspy.Example]
    val: list[dspy.Example]
    train_ids: list[str]
    val_ids: list[str]


class TrainRow(NamedTuple):
    """One usable row of a training file: its id, its prompt, and the record
    fields the recipe's ``input:`` reads from it (columns, label)."""

    id: str
    prompt: str
    fields: dict = {}


def load_trainset(path: str | Path, field_name: str = "prompt", id_field: str | None = "id",
                  limit: int | None = None, spec: InputSpec | None = None) -> list[TrainRow]:
    """The usable rows of a JSONL or CSV file, with the fields ``spec`` (the
    recipe's ``input:``) reads. A bad row is an error (naming the file and
    row): a training set is small and hand-made."""
    rows, problems = [], []
    for item in read_inputs(path, field_name, id_field, None, limit, spec=spec):
        if item.error:
            problems.append(item.error)
        else:
            rows.append(TrainRow(item.id, item.prompt, dict(item.fields)))
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{path}: {'; '.join(problems[:3])}{more}; fix or remove these rows")
    return rows


def labeled_rows(rows: Sequence[TrainRow], path: str | Path, recipe: Recipe) -> tuple[list[TrainRow], list[str]]:
    """The rows whose label is ``answer`` or ``decline`` (what ``--metric
    behavior`` checks against), and the ids of the rows left out (label
    ``unknown``). No labeled row at all is a :class:`UserError`."""
    if recipe.input.label is None:
        raise UserError(f"--metric behavior checks responses against the inputs' labels, but recipe "
                        f"{recipe.name} ({recipe.path.name}) reads no label from {path}: set `input.label` in "
                        "the recipe, e.g. `input: {label: label}` (a column of answer/decline, or safe/unsafe), "
                        "or use a judge metric")
    keep = [row for row in rows if row.fields.get("label") in ("answer", "decline")]
    if not keep:
        column = recipe.input.label.column
        where = f"column {column!r}" if column else "the label default"
        raise UserError(f"{path}: no labeled row: every row's label ({where}) is unknown or missing, and "
                        "--metric behavior needs answer/decline labels; use a labeled file, or set "
                        "`input.label` in the recipe to the column holding them, e.g. `input: {label: label}`")
    left_out = [row.id for row in rows if row.fields.get("label") not in ("answer", "decline")]
    return keep, left_out


def split_trainset(rows: Sequence[TrainRow | tuple[str, str]], val_fraction: float = 0.3, seed: int = 0) -> Split:
    """Shuffle ``rows`` with ``seed`` and hold out ``val_fraction`` of them
    (at least one, and at least one left to train on); both parts keep the
    input order. The same rows and seed always give the same split."""
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction {val_fraction}: expected a fraction between 0 and 1, e.g. 0.3")
    if len(rows) < 2:
        raise UserError(f"the training set has {len(rows)} usable prompt(s); it needs at least 2 "
                        "(one to train on, one to validate)")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = min(len(rows) - 1, max(1, round(len(rows) * val_fraction)))
    val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])

    def example(row):
        fields = row[2] if len(row) > 2 else {}
        return dspy.Example(query=row[1], **fields).with_inputs("query", *fields)

    return Split([example(rows[i]) for i in train_idx], [example(rows[i]) for i in val_idx],
                 [rows[i][0] for i in train_idx], [rows[i][0] for i in val_idx])


# -------------------------------------------------------- the tuned program

def agent_modules(program: Program) -> list:
    """Every agent module of a program, in stage order (an agent used by two
    stages appears twice: each stage has its own copy)."""
    return [agent for stage in program.stage_modules() for agent in stage.agent_modules()]


class TunableProgram(dspy.Module):
    """A :class:`Program` as DSPy optimizers see it.

    * Agents outside ``roles`` are frozen (DSPy skips sub-modules marked
      compiled), so an optimizer neither sees nor changes them.
    * Copies share what must not be copied: models (their cache and
      semaphores), the recipe, the policies. DSPy's generic deepcopy would
      fall back to a shallow copy for a list of agents (the deliberators),
      and the "copy" would share its predictors with the original.
    * ``reset_copy`` clears demos but keeps each agent's own model (DSPy's
      reset would drop it and fall back to a global LM we never set).
    """

    def __init__(self, program: Program, roles: Sequence[str] | None = None):
        super().__init__()
        self.program = program
        roles = set(roles) if roles is not None else None
        for agent in agent_modules(program):
            agent._compiled = roles is not None and agent.spec.name not in roles

    def forward(self, query: str, **fields: Any) -> dspy.Prediction:
        return self.program(query=query, **fields)

    def _shared(self) -> list:
        p = self.program
        shared = [p.recipe, p.models, p.policies, p.cache]
        for agent in agent_modules(p):
            shared += [agent.predict.lm, agent.spec, agent.contract]
        return [s for s in shared if s is not None]

    def deepcopy(self) -> "TunableProgram":
        memo = {id(obj): obj for obj in self._shared()}
        return copy.deepcopy(self, memo)

    def reset_copy(self) -> "TunableProgram":
        new = self.deepcopy()
        for predictor in new.predictors():
            predictor.demos, predictor.traces, predictor.train = [], [], []
        return new

    def unfreeze(self) -> Program:
        """The wrapped program, every agent thawed, memoized keys reset."""
        for agent in agent_modules(self.program):
            agent._compiled = False
        self.program.reset_keys()
        return self.program


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump())
    return str(value)


def clean_demos(program: Program) -> None:
    """Make demos data: JSON values only, without the policy text."""
    for agent in agent_modules(program):
        agent.predict.demos = [dspy.Example(**{k: _jsonable(v) for k, v in dict(d).items()
                                               if k not in DEMO_DROP_FIELDS})
                               for d in agent.predict.demos]


# -------------------------------------------------------------- scoring

@dataclass
class SplitScore:
    """The metric over a split: its mean (0..1) with a bootstrap interval,
    each judge's mean raw score over the records it scored, and what counted
    0 without a score."""

    metric: Interval
    values: list[float]
    judges: dict[str, float | None]
    unscored: int = 0  # verdicts that could not be parsed or failed
    filtered: int = 0  # records a stage filtered (not judged)
    failed: int = 0  # records the program could not produce (an agent's answer never parsed)

    def to_dict(self) -> dict:
        return {"metric": self.metric.to_dict(), "values": self.values, "judges": self.judges,
                "unscored": self.unscored, "filtered": self.filtered, "failed": self.failed}


def score_program(program, examples: Sequence[dspy.Example], metric: JudgeMetric | BehaviorMetric,
                  workers: int = 1) -> SplitScore:
    """Run the program (no stage cache) on each example, with its input
    fields, and score it."""

    def one(example):
        try:
            prediction = program(**example.inputs())
        except UserError:
            raise  # configuration (a missing key): stop, do not score 0
        except Exception as exc:  # an unparseable answer: the record fails and scores 0
            return None, f"{type(exc).__name__}: {redact(str(exc))[:200]}"
        return metric.measure(example, prediction), None

    results = run_tasks([lambda e=e: one(e) for e in examples], workers)
    values, failed, filtered, unscored = [], 0, 0, 0
    raw: dict[str, list[int]] = {name: [] for name in metric.spec.weights}
    for score, _error in results:
        if score is None:
            failed += 1
            values.append(0.0)
            continue
        values.append(score.value)
        filtered += any(s == "skipped" for s in score.statuses.values())
        unscored += sum(s in ("unscored", "error") for s in score.statuses.values())
        for name, value in score.scores.items():
            if value is not None:
                raw[name].append(value)
    judges = {name: (sum(v) / len(v) if v else None) for name, v in raw.items()}
    return SplitScore(bootstrap_mean(values), values, judges, unscored, filtered, failed)


# ------------------------------------------------------------- optimizers

@dataclass
class OptimizeOptions:
    """Everything ``aidsafe optimize`` takes besides the recipe, the
    training file and the output folder."""

    optimizer: str = "bootstrap"
    metric: str = DEFAULT_METRIC
    roles: list[str] | None = None
    val_fraction: float = 0.3
    seed: int = 0
    judge_model: str | None = None
    judge_api_base: str | None = None  # endpoint of the judge models
    judge_api_key_env: str | None = None  # variable holding their API key
    prompt_model: str | None = None  # MIPROv2's proposer / GEPA's reflection model
    prompt_api_base: str | None = None
    prompt_api_key_env: str | None = None
    model_overrides: dict[str, str] = field(default_factory=dict)
    max_demos: int = 2  # bootstrapped demos per agent (bootstrap, mipro)
    threshold: float = 0.75  # a run becomes a demo only if its metric reaches this
    trials: int | None = None  # mipro: search trials (default 6); gepa: full evaluations' budget (default 3)
    candidates: int = 3  # mipro: instruction and demo-set candidates
    neighbours: int = 4  # knn: nearest training prompts bootstrapped for each query
    embedder: str = "lexical"  # knn: `lexical`, a recipe `models:` entry, or a model string
    field: str | None = None
    id_field: str | None = None
    limit: int | None = None
    workers: int = 1
    cache_dir: Path | None = None
    use_cache: bool = True
    force: bool = False


def _prompt_lm(judge_set, options: OptimizeOptions, cache: Cache):
    """The model that writes instructions (MIPROv2) or reflects (GEPA):
    ``--prompt-model``, else ``--judge-model``, else the judges file's first
    model, with room for a few paragraphs and some sampling. The judge model
    used as the prompt model keeps the judges' endpoint and key unless
    ``--prompt-api-base``/``--prompt-api-key-env`` say otherwise."""
    if judge_set is None and not (options.prompt_model or options.judge_model):
        raise UserError(f"--optimizer {options.optimizer} needs a model that writes instructions, and --metric "
                        f"{BEHAVIOR} uses no judge model to fall back on; pass --prompt-model MODEL (e.g. "
                        "--prompt-model local:default), or use --optimizer bootstrap or knn")
    base = next(iter(judge_set.models.values())) if judge_set is not None else ModelSpec(name="prompt_model", model="")
    if options.prompt_model:
        model, api_base, key_env = options.prompt_model, None, None
    elif options.judge_model:
        model, api_base, key_env = options.judge_model, options.judge_api_base, options.judge_api_key_env
    else:
        model = base.model
        api_base = options.judge_api_base or base.api_base
        key_env = options.judge_api_key_env or base.api_key_env
    spec = ModelSpec(name="prompt_model", model=model, api_base=options.prompt_api_base or api_base,
                     api_key_env=options.prompt_api_key_env or key_env,
                     params={"temperature": 0.7, "max_tokens": 1024}, concurrency=base.concurrency,
                     context=base.context, threads=base.threads, poll=base.poll, repeat_penalty=base.repeat_penalty)
    return build_models({"prompt_model": spec}, cache)["prompt_model"]


class _DropTracebacks(logging.Filter):
    """Drops log records that are a library's formatted traceback (GEPA
    logs one for every failed reflection): a failing prompt model is
    reported once, as the command's own `Error:` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "Traceback (most recent call last)" not in message and record.exc_info is None


@contextlib.contextmanager
def _no_library_tracebacks(*names: str):
    drop = _DropTracebacks()
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def _prompt_model_failed(options: OptimizeOptions, handle) -> UserError:
    """The error for a prompt model that failed (every call, or the one the
    optimizer could not go on without). Nothing has been written."""
    engine = handle.engine
    error = engine.last_error
    detail = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else type(error).__name__
    flag = "--prompt-model" if options.prompt_model else ("--judge-model" if options.judge_model else "the judges file's model")
    return UserError(
        f"{flag} {handle.spec.model!r}, the {options.optimizer} prompt model, failed ({engine.failed} of "
        f"{engine.failed + engine.answered} calls): {detail}; nothing was written. Check the model string "
        "(e.g. --prompt-model openai/NAME --prompt-api-base http://HOST:8000/v1, or local:default) and its key "
        "(--prompt-api-key-env VAR)")


def _run_optimizer(name: str, student: TunableProgram, split: Split, metric: JudgeMetric | BehaviorMetric,
                   options: OptimizeOptions, prompt_handle, embedder=None) -> tuple[TunableProgram, dict]:
    """Compile ``student`` with the named DSPy optimizer; returns the tuned
    copy and the settings used (for meta.json). ``embedder``: knn's."""
    n_train = len(split.train)
    if name == "bootstrap":
        from dspy.teleprompt import BootstrapFewShot

        settings = {"class": "dspy.BootstrapFewShot", "max_bootstrapped_demos": options.max_demos,
                    "max_labeled_demos": 0, "metric_threshold": options.threshold}
        optimizer = BootstrapFewShot(**_bootstrap_args(metric, options))
        return optimizer.compile(student, trainset=split.train), settings
    if name == "mipro":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise UserError("--optimizer mipro needs optuna: pip install 'optuna>=3.4' "
                            "(or use --optimizer bootstrap or gepa)") from None
        from dspy.teleprompt import MIPROv2

        trials = options.trials or 6
        settings = {"class": "dspy.MIPROv2", "num_candidates": options.candidates, "num_trials": trials,
                    "max_bootstrapped_demos": options.max_demos, "max_labeled_demos": 0,
                    "metric_threshold": options.threshold, "prompt_model": prompt_handle.identity,
                    "selection_set": "train"}
        optimizer = MIPROv2(metric=metric, prompt_model=prompt_handle.lm, task_model=prompt_handle.lm,
                            max_bootstrapped_demos=options.max_demos, max_labeled_demos=0, auto=None,
                            num_candidates=options.candidates, num_threads=options.workers, seed=options.seed,
                            metric_threshold=options.threshold or None, verbose=False, track_stats=False)
        # The held-out split is never shown to the optimizer: it selects on
        # the training prompts, so the reported gain is not selected for.
        # The program's source is the generic engine, not the task: showing
        # it to the proposer (program_aware) would describe the wrong thing.
        tuned = optimizer.compile(student, trainset=split.train, valset=split.train, num_trials=trials,
                                  minibatch=n_train > 35, minibatch_size=min(35, n_train),
                                  program_aware_proposer=False)
        return tuned, settings
    if name == "gepa":
        from dspy.teleprompt import GEPA

        evals = options.trials or 3
        settings = {"class": "dspy.GEPA", "max_full_evals": evals, "reflection_lm": prompt_handle.identity,
                    "reflection_minibatch_size": min(3, n_train), "selection_set": "train"}
        optimizer = GEPA(metric=metric, max_full_evals=evals, reflection_lm=prompt_handle.lm,
                         reflection_minibatch_size=min(3, n_train), num_threads=options.workers,
                         seed=options.seed, track_stats=False, use_merge=False)
        # Pareto tracking on the training prompts too: the held-out split stays unseen.
        with _no_library_tracebacks("dspy.teleprompt.gepa.gepa", "gepa"):
            return optimizer.compile(student, trainset=split.train, valset=split.train), settings
    if name == "knn":
        from dspy.teleprompt import KNNFewShot

        settings = {"class": "dspy.KNNFewShot", "k": min(options.neighbours, n_train),
                    "embedder": embedder.identity, "max_bootstrapped_demos": options.max_demos,
                    "max_labeled_demos": 0, "metric_threshold": options.threshold}
        optimizer = KNNFewShot(min(options.neighbours, n_train), split.train,
                               dspy.Embedder(embedder.embed, caching=False), **_bootstrap_args(metric, options))
        return optimizer.compile(student), settings
    raise UserError(f"unknown optimizer {name!r}{suggest(name, list(OPTIMIZERS))}; "
                    f"choose one of {', '.join(OPTIMIZERS)}")


def _bootstrap_args(metric, options: OptimizeOptions) -> dict:
    """BootstrapFewShot's arguments (bootstrap, and knn per query)."""
    # DSPy accepts a run when the metric is truthy (or reaches a truthy
    # threshold), so threshold 0 would still reject a 0.0 run: no metric
    # at all is what "accept every run" means there.
    return {"metric": metric if options.threshold > 0 else None, "metric_threshold": options.threshold or None,
            "max_bootstrapped_demos": options.max_demos, "max_labeled_demos": 0, "max_rounds": 1}


def knn_embedder(name: str, recipe: Recipe, cache: Cache | None = None):
    """The embedder ``--embedder`` names for KNNFewShot: ``lexical`` (no
    model, deterministic), an entry of the recipe's ``models:``, or a model
    string; its vectors cached in ``cache`` when given and on."""
    from aidsafe.models._embed import build_embedder

    spec = recipe.models[name] if name in recipe.models else name
    return build_embedder(spec, cache if cache is not None and cache.enabled else None)


def knn_pools(student: TunableProgram, split: Split, metric, options: OptimizeOptions,
              roles: Sequence[str]) -> dict[str, list[dict]]:
    """Per tuned agent, the demos KNNFewShot chooses from: BootstrapFewShot
    over the whole training split, one demo per accepted run (the same
    runs, from the cache, as KNNFewShot's per-query bootstraps)."""
    from dspy.teleprompt import BootstrapFewShot

    args = {**_bootstrap_args(metric, options), "max_bootstrapped_demos": len(split.train)}
    tuned = BootstrapFewShot(**args).compile(student, trainset=split.train)
    pools: dict[str, list[dict]] = {}
    for agent in agent_modules(tuned.program):
        name = agent.spec.name
        if name not in roles or name in pools:
            continue
        pools[name] = [{k: _jsonable(v) for k, v in dict(d).items() if k not in DEMO_DROP_FIELDS and k != "augmented"}
                       for d in agent.predict.demos]
    tuned.unfreeze()
    return pools


# ---------------------------------------------------------------- result

@dataclass
class OptimizeResult:
    """What ``aidsafe optimize`` did and where it wrote it."""

    recipe: str
    out_dir: Path
    prompts_path: Path
    meta_path: Path
    optimizer: str
    metric: MetricSpec
    roles: list[str]
    split: Split
    before: SplitScore
    after: SplitScore
    difference: Interval
    changes: dict[str, dict]  # role -> {instructions_changed, demos}
    meta: dict
    seconds: float = 0.0
    calls: dict = field(default_factory=dict)  # new / cached LM calls
    warnings: list[str] = field(default_factory=list)
    use_hint: str = ""

    def tables(self):
        """Before/after on the validation split as report tables."""
        from aidsafe.evaluation._report import Table

        def cell(value, digits=2):
            return "n/a" if value is None else f"{value:.{digits}f}"

        b, a, d = self.before.metric, self.after.metric, self.difference
        described = (f"{BEHAVIOR}: agreement with the labels, by string match" if self.metric.uses_labels
                     else self.metric.describe())
        rows = [[f"metric ({described}), 0..1", f"{cell(b.mean, 3)} [{cell(b.low, 3)}, {cell(b.high, 3)}]",
                 f"{cell(a.mean, 3)} [{cell(a.low, 3)}, {cell(a.high, 3)}]",
                 f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" if d.mean is not None else "n/a"]]
        for name in self.metric.weights if not self.metric.uses_labels else ():
            before, after = self.before.judges.get(name), self.after.judges.get(name)
            diff = f"{after - before:+.2f}" if before is not None and after is not None else "n/a"
            rows.append([f"{name} (mean score when scored)", cell(before), cell(after), diff])
        rows.append(["unscored verdicts (count 0)", str(self.before.unscored), str(self.after.unscored), ""])
        rows.append(["filtered records (count 0)", str(self.before.filtered), str(self.after.filtered), ""])
        rows.append(["failed records (count 0)", str(self.before.failed), str(self.after.failed), ""])
        notes = [f"validation split: {len(self.split.val)} prompt(s) held out from {len(self.split.val) + len(self.split.train)} "
                 f"(the optimizer trained on {len(self.split.train)}); 95% bootstrap intervals, the difference "
                 "paired over prompts"]
        changes = []
        for role, change in self.changes.items():
            what = []
            if change["instructions_changed"]:
                what.append("new instructions")
            what.append(f"{change['demos']} demo(s)" if "precedents" not in change else
                        f"{change['precedents']} precedent(s), the nearest chosen per query")
            changes.append([role, ", ".join(what)])
        tables = [Table(f"{self.optimizer}: {self.recipe}, validation split before -> after",
                        ["", "before", "after", "after - before"], rows, notes)]
        tables.append(Table("Optimized agents", ["agent", "change"], changes))
        return tables

    def lines(self) -> list[str]:
        out = [f"prompts written to {self.prompts_path}", f"run metadata written to {self.meta_path}"]
        if self.calls:
            out.append(f"LM calls: {self.calls['total']} ({self.calls['cached']} from the cache), "
                       f"{self.seconds:.1f}s")
        if self.use_hint:
            out.append(self.use_hint)
        pools = self.meta.get("settings", {}).get("precedents") or {}
        if pools:
            k = self.meta["settings"]["k"]
            out.append(f"knn precedent pools written to {self.out_dir / PRECEDENTS_DIR}; per-query demos as "
                       f"measured: give an agent `demos: {{select: nearest, k: {k}, pool: <its pool>}}`")
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _saved_prompts(program: Program, names: list[str], warnings: list[str]) -> dict:
    """dump_prompts, keeping ``names``. An agent used by several stages was
    tuned separately in each: the first stage's version is kept."""
    data = dump_prompts(program)
    by_name: dict[str, list[dict]] = {}
    for agent in agent_modules(program):
        by_name.setdefault(agent.spec.name, []).append(
            {"instructions": agent.predict.signature.instructions, "demos": [dict(d) for d in agent.predict.demos]})
    agents = {}
    for name in names:
        versions = by_name.get(name)
        if not versions:
            continue
        if any(v != versions[0] for v in versions[1:]):
            warnings.append(f"agent {name!r} is used by {len(versions)} stages and was tuned differently in each; "
                            "prompts.json keeps the first stage's version")
        agents[name] = versions[0] if len(versions) > 1 else data["agents"][name]
    return {"recipe": data["recipe"], "agents": agents}


def _use_hint(recipe: Recipe, out_dir: Path) -> str:
    """How a recipe refers to ``out_dir`` (engine.prompts resolves it inside
    the project root or the recipe's folder)."""
    out = out_dir.resolve()
    allowed = [recipe.base_dir.resolve(), paths.project_root().resolve()]
    if not any(out == a or a in out.parents for a in allowed):
        return (f"note: {out_dir} is outside the project and the recipe's folder, so a recipe cannot use it; "
                "write it under the project (e.g. --out optimized/NAME)")
    return f"use it: add `prompts: {os.path.relpath(out, recipe.base_dir.resolve())}` to {recipe.path.name}"


def optimize(recipe: str | Path | Recipe, trainset: str | Path, out_dir: str | Path,
             options: OptimizeOptions | None = None) -> OptimizeResult:
    """Tune ``recipe``'s agents on the prompts in ``trainset`` and write
    ``out_dir/prompts.json`` and ``out_dir/meta.json``."""
    options = options or OptimizeOptions()
    started = time.perf_counter()
    if options.optimizer not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {options.optimizer!r}{suggest(options.optimizer, list(OPTIMIZERS))}; "
                        f"choose one of {', '.join(OPTIMIZERS)}")
    out_dir = Path(out_dir)
    prompts_path, meta_path = out_dir / PROMPTS_FILE, out_dir / META_FILE
    if prompts_path.exists() and not options.force:
        raise UserError(f"{prompts_path} exists; pass --force to replace it, or choose another --out")
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    metric_spec = parse_metric(options.metric)
    # The label metric loads no judges file and builds no judge model.
    judge_set = None if metric_spec.uses_labels else load_judges(metric_spec.judges)
    for name in metric_spec.weights if judge_set is not None else ():
        judge_set.get(name)  # an unknown judge fails before anything runs
    used = list(dict.fromkeys(name for spec in recipe.stages for name in spec.agent_names()))
    roles = list(dict.fromkeys(options.roles)) if options.roles else used
    for role in roles:
        if role not in used:
            raise UserError(f"--roles: {role!r} is not an agent of recipe {recipe.name}'s stages"
                            f"{suggest(role, used)}; agents: {', '.join(used)}")
    rows = load_trainset(trainset, options.field or recipe.input_field, options.id_field or recipe.id_field,
                         options.limit, spec=recipe.input)
    warnings: list[str] = []
    unlabeled: list[str] = []
    if metric_spec.uses_labels:
        rows, unlabeled = labeled_rows(rows, trainset, recipe)
        if unlabeled:
            warnings.append(f"{len(unlabeled)} row(s) of {trainset} with label unknown were left out of the "
                            f"training set (--metric {BEHAVIOR} has nothing to check them against)")
    split = split_trainset(rows, options.val_fraction, options.seed)

    cache = Cache(options.cache_dir or default_cache_dir(), enabled=options.use_cache)
    try:
        models = build_models(recipe.models, cache, options.model_overrides)
        # No stage cache: the optimizer changes what stages would compute.
        program = compile_recipe(recipe, models, cache=None)
        start_prompts = dump_prompts(program)
        panel = None
        if metric_spec.uses_labels:
            metric: JudgeMetric | BehaviorMetric = BehaviorMetric()
        else:
            panel = JudgePanel.build(judge_set, cache, judge_model=options.judge_model,
                                     api_base=options.judge_api_base, api_key_env=options.judge_api_key_env)
            metric = JudgeMetric(panel, metric_spec)
        needs_prompt_model = options.optimizer in ("mipro", "gepa")
        prompt_handle = _prompt_lm(judge_set, options, cache) if needs_prompt_model else None
        embedder = knn_embedder(options.embedder, recipe, cache) if options.optimizer == "knn" else None

        before = score_program(program, split.val, metric, options.workers)
        student = TunableProgram(program, roles)
        # DSPy's optimizers print progress to stdout; stdout is for results.
        try:
            with contextlib.redirect_stdout(sys.stderr):
                tuned, settings = _run_optimizer(options.optimizer, student, split, metric, options, prompt_handle,
                                                 embedder)
                pools = None
                if options.optimizer == "knn":
                    # Demos are chosen per query: measure the tuned module as
                    # it is (each validation prompt gets its neighbours), then
                    # keep what it chooses from.
                    after = score_program(tuned, split.val, metric, options.workers)
                    pools = knn_pools(student, split, metric, options, roles)
        except UserError:
            raise
        except Exception:
            if prompt_handle is not None and prompt_handle.engine.failed:
                raise _prompt_model_failed(options, prompt_handle) from None
            raise
        if prompt_handle is not None and prompt_handle.engine.failed and not prompt_handle.engine.answered:
            # GEPA swallows a failed reflection and keeps the instructions it
            # had: saving those as "optimized" would report a success that
            # never happened.
            raise _prompt_model_failed(options, prompt_handle)
        student.unfreeze()  # the original program: its agents thawed again
        optimized = tuned.unfreeze()
        clean_demos(optimized)
        optimized.reset_keys()
        if pools is None:
            after = score_program(optimized, split.val, metric, options.workers)

        # Save the tuned roles, plus any role the recipe's own prompts file
        # already changed, so pointing the recipe here loses nothing.
        previous = [a for a in _prompts_file_agents(recipe) if a not in roles]
        saved = _saved_prompts(optimized, roles + previous, warnings)
        if pools is not None:
            # knn's demos are per query: the file keeps the instructions and
            # leaves each agent's own demos alone; the pools hold the rest.
            for role in roles:
                saved["agents"].get(role, {}).pop("demos", None)
        changes = {}
        for role in roles:
            entry = saved["agents"].get(role, {})
            changes[role] = {"instructions_changed": entry.get("instructions") != start_prompts["agents"][role]["instructions"],
                             "demos": len(entry.get("demos", []))}
            if pools is not None:
                changes[role]["precedents"] = len(pools.get(role, []))
        if options.optimizer == "gepa" and not any(c["instructions_changed"] for c in changes.values()):
            warnings.append("gepa kept every agent's instructions: no proposal scored higher on the training "
                            "prompts (more --trials, or a stronger --prompt-model, may find one)")
        difference = bootstrap_difference(before.values, after.values, paired=True)
        calls = {"total": cache.counters.call_hits + cache.counters.call_misses, "cached": cache.counters.call_hits}
        verdicts = {"metric_calls": metric.calls, "unscored": dict(metric.unscored), "filtered": metric.skipped}
        unscored = sum(metric.unscored.values())
        if unscored:
            warnings.append(f"{unscored} of {metric.calls * len(metric_spec.weights)} verdicts in this run (optimizer "
                            "and before/after) were unscored and counted 0 ("
                            + ", ".join(f"{n}: {c}" for n, c in metric.unscored.items() if c) + ")")
        if metric.skipped:
            warnings.append(f"{metric.skipped} of {metric.calls} judged runs were filtered by a stage and counted 0")
        if pools is not None:
            settings["precedents"] = _write_pools(out_dir, pools, warnings)
        seconds = time.perf_counter() - started
        if panel is None:
            metric_meta = {"spec": BEHAVIOR, "labels": f"input.label of {recipe.path.name}",
                           "classifier": "string match (aidsafe.evaluation.classify_refusal)",
                           "normalisation": "1 when the response does what the label asks (answer: full compliance; "
                                            "decline: full refusal), else 0; filtered = 0",
                           "left_out_unknown": unlabeled, "verdicts": verdicts}
        else:
            metric_meta = {"spec": metric_spec.describe(), "judges_file": str(judge_set.path),
                           "judges_hash": judge_set.hash, "weights": metric_spec.weights,
                           "judge_models": panel.identity()["models"],
                           "normalisation": "each score mapped from its scale to 0..1; weighted mean; unscored = 0",
                           "verdicts": verdicts}
        meta = {
            "optimizer": options.optimizer,
            "settings": settings,
            "metric": metric_meta,
            "recipe": {"name": recipe.name, "path": str(recipe.path), "hash": recipe.hash,
                       "models": {n: h.identity for n, h in sorted(models.items())},
                       "started_from_prompts": recipe.prompts},
            "roles": roles,
            "trainset": {"path": str(trainset), "train_ids": split.train_ids, "val_ids": split.val_ids,
                         "val_fraction": options.val_fraction, "seed": options.seed},
            "scores": {"before": before.to_dict(), "after": after.to_dict(), "difference": difference.to_dict(),
                       "split": "validation"},
            "changes": changes,
            "lm_calls": calls,
            "seconds": round(seconds, 1),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "engine": f"aidsafe {__version__}",
            "dspy": dspy.__version__,
        }
        _write_json(prompts_path, saved)
        _write_json(meta_path, meta)
    finally:
        cache.close()
    return OptimizeResult(recipe=recipe.name, out_dir=out_dir, prompts_path=prompts_path, meta_path=meta_path,
                          optimizer=options.optimizer, metric=metric_spec, roles=roles, split=split, before=before,
                          after=after, difference=difference, changes=changes, meta=meta, seconds=seconds,
                          calls=calls, warnings=warnings, use_hint=_use_hint(recipe, out_dir))


def _write_pools(out_dir: Path, pools: dict[str, list[dict]], warnings: list[str]) -> dict[str, str]:
    """Write each agent's knn pool as ``OUT/precedents/AGENT.jsonl`` (rows
    with the query, as :class:`aidsafe.pipeline.NearestPool` reads them);
    returns agent -> path of the pools written."""
    written = {}
    for agent, rows in pools.items():
        usable = [row for row in rows if isinstance(row.get("query"), str) and row["query"].strip()]
        if len(usable) < len(rows):
            warnings.append(f"knn: {len(rows) - len(usable)} demo(s) of agent {agent!r} have no query and are left "
                            "out of its precedent pool")
        if not usable:
            continue
        path = out_dir / PRECEDENTS_DIR / f"{agent}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in usable)
        written[agent] = str(path)
    return written


def _prompts_file_agents(recipe: Recipe) -> list[str]:
    """Agents the recipe's own ``prompts:`` file sets (none without one)."""
    if not recipe.prompts:
        return []
    from aidsafe.config._prompts import load_prompts

    return list(load_prompts(recipe)["agents"])


__all__ = [
    "BEHAVIOR", "BehaviorMetric", "DEFAULT_METRIC", "JudgeMetric", "MetricScore", "MetricSpec", "OPTIMIZERS",
    "OptimizeOptions", "OptimizeResult", "Split", "SplitScore", "TrainRow", "TunableProgram", "clean_demos",
    "knn_embedder", "knn_pools", "labeled_rows", "load_trainset", "optimize", "parse_metric", "score_program",
    "split_trainset",
]
