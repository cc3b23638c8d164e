"""The dataset card (``README.md``) of an ``aidsafe export --format hf`` folder.

A YAML header the Hugging Face Hub and ``datasets.load_dataset`` read
(``configs`` naming the parquet shards of each split, ``dataset_info`` with
the features and split sizes, ``license``, tags) plus an ``aidsafe`` block,
then a Markdown body: a content warning, how the data was made (recipe and
its hash, policy set, models), record counts by status, the preference
pairs' scores and the recipe's margin threshold, judge means with 95%
bootstrap intervals when the records were scored (``aidsafe eval``), the
license of the source prompts, and how to load and train on it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import yaml

CONTENT_WARNING = ("This dataset contains prompts that request harmful, dangerous or offensive content "
                   "(jailbreak attempts included) and model-written reasoning about them.")
_WARNING_BY_LAYOUT = {
    "sft": "The completions are meant to be safe, but they were written by a model and quote or paraphrase "
           "the harmful requests they answer; read them before training on them.",
    "dpo": "The rejected side of each preference pair is deliberately worse and may comply with harmful "
           "requests.",
}


def content_warning(layout: str) -> str:
    """The card's content warning, in words that fit the rows (SFT or DPO)."""
    return " ".join([CONTENT_WARNING, _WARNING_BY_LAYOUT.get(layout, ""),
                     "Use it to train and evaluate safety behaviour only."]).replace("  ", " ")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class CardStats:
    """What the card reports, gathered record by record while exporting."""

    statuses: Counter = field(default_factory=Counter)
    recipes: Counter = field(default_factory=Counter)  # (name, hash) -> records
    policy_sets: Counter = field(default_factory=Counter)  # (name, hash) -> records
    models: dict = field(default_factory=lambda: defaultdict(set))  # model role -> identities
    engines: set = field(default_factory=set)
    sources: Counter = field(default_factory=Counter)  # imported data: provenance source -> records
    inputs: Counter = field(default_factory=Counter)  # the input set: (name, sha256 or fingerprint) -> records
    thresholds: Counter = field(default_factory=Counter)  # the pair stage's margin setting
    pair_scores: dict = field(default_factory=lambda: defaultdict(list))  # chosen/rejected/margin -> values
    judge_scores: dict = field(default_factory=lambda: defaultdict(list))  # metric -> values
    judge_unscored: Counter = field(default_factory=Counter)

    def add(self, record: dict) -> None:
        """Count one record (any status)."""
        self.statuses[str(record.get("status"))] += 1
        provenance = record.get("provenance") or {}
        if provenance.get("recipe"):
            self.recipes[(str(provenance["recipe"]), str(provenance.get("recipe_hash") or ""))] += 1
        if provenance.get("policy_set"):
            self.policy_sets[(str(provenance["policy_set"]), str(provenance.get("policy_hash") or ""))] += 1
        for role, identity in (provenance.get("models") or {}).items():
            # identities are dicts (backend, model, api_base or weights hash): kept whole, as sorted JSON
            self.models[str(role)].add(json.dumps(identity, sort_keys=True, default=str))
        if provenance.get("engine"):
            self.engines.add(str(provenance["engine"]))
        if provenance.get("source"):
            self.sources[str(provenance["source"])] += 1
        given = provenance.get("input")
        if isinstance(given, dict) and given.get("name"):
            self.inputs[(str(given["name"]), str(given.get("sha256") or given.get("fingerprint") or ""))] += 1
        preference = record.get("preference") or {}
        if preference.get("margin") is not None:
            self.thresholds[preference["margin"]] += 1
        if record.get("status") == "ok" and preference.get("kept") is not False:
            scores = preference.get("scores") or {}
            chosen, rejected = _number(scores.get("chosen")), _number(scores.get("rejected"))
            if chosen is not None and rejected is not None:
                self.pair_scores["chosen"].append(chosen)
                self.pair_scores["rejected"].append(rejected)
                self.pair_scores["margin"].append(chosen - rejected)
        for metric, value in (record.get("scores") or {}).items():
            if _number(value) is not None:
                self.judge_scores[str(metric)].append(_number(value))
            elif value is None and record.get("status") == "ok":
                self.judge_unscored[str(metric)] += 1


@dataclass(frozen=True)
class CardInfo:
    """What the export knows beyond the records: layout, splits, license."""

    name: str
    layout: str  # sft or dpo
    style: str  # prompt-completion, messages or preference
    thinking: str  # how the CoT is placed, in words
    splits: dict  # split -> rows
    split_bytes: dict  # split -> arrow bytes (dataset_info wants them)
    features: list  # datasets' YAML form of the features
    license: str | None = None  # of the source prompts (an SPDX-like id)
    skipped: dict = field(default_factory=dict)  # reason -> records left out
    review: dict | None = None  # --reviewed: {"file", "rejected", "edited", "stale"} (aidsafe view's labels)


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "n>1M"


def _intervals(values: dict) -> dict:
    """metric -> bootstrap mean and 95% interval (the one used by ``aidsafe eval``)."""
    if not values:
        return {}
    from aidsafe.evaluation._stats import bootstrap_mean

    return {name: bootstrap_mean(data) for name, data in values.items() if data}


def card_metadata(stats: CardStats, info: CardInfo) -> dict:
    """The YAML header: Hub metadata, ``configs``/``dataset_info`` for the
    loaders, and the ``aidsafe`` block (provenance and counts)."""
    total = sum(info.splits.values())
    aidsafe: dict[str, Any] = {
        "layout": info.layout, "style": info.style, "thinking": info.thinking,
        "recipes": [{"name": n, "hash": h, "records": c} for (n, h), c in sorted(stats.recipes.items())],
        "policy_sets": [{"name": n, "hash": h} for (n, h) in sorted(stats.policy_sets)],
        "models": {role: [json.loads(i) for i in sorted(ids)] for role, ids in sorted(stats.models.items())},
        "records": dict(sorted(stats.statuses.items())),
        "left_out": dict(sorted(info.skipped.items())),
        "source_prompts_license": info.license or "unknown",
    }
    if stats.inputs:
        aidsafe["inputs"] = [{"name": n, "hash": h, "records": c} for (n, h), c in sorted(stats.inputs.items())]
    if info.review is not None:
        aidsafe["review"] = dict(info.review)
    if stats.sources:
        aidsafe["sources"] = dict(stats.sources)
    if stats.thresholds:
        aidsafe["margin_threshold"] = sorted(stats.thresholds, key=str)[0] if len(stats.thresholds) == 1 \
            else sorted(stats.thresholds, key=str)
    means = {**{f"pair_{k}": v for k, v in _intervals(stats.pair_scores).items()},
             **_intervals(stats.judge_scores)}
    if means:
        aidsafe["means"] = {k: {"mean": round(v.mean, 4), "ci95": [round(v.low, 4), round(v.high, 4)], "n": v.n}
                            for k, v in means.items()}
    tags = ["safety", "chain-of-thought", "aidsafe", "synthetic", info.layout, "trl"]
    return {
        "license": info.license or "unknown",
        "pretty_name": info.name,
        "task_categories": ["text-generation"],
        "tags": tags,
        "size_categories": [_size_category(total)],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in info.splits]}],
        "dataset_info": {"features": info.features,
                         "splits": [{"name": s, "num_bytes": info.split_bytes.get(s, 0), "num_examples": n}
                                    for s, n in info.splits.items()],
                         "dataset_size": sum(info.split_bytes.values())},
        "aidsafe": aidsafe,
    }


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _identity(identity: Any) -> str:
    """``model`` (backend: ..., api_base: ...) from a model identity."""
    if not isinstance(identity, dict):
        return f"`{identity}`"
    rest = ", ".join(f"{k}: {v}" for k, v in identity.items() if k != "model")
    return f"`{identity.get('model', '?')}`" + (f" ({rest})" if rest else "")


def _fmt(interval) -> str:
    return f"{interval.mean:.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def render_card(stats: CardStats, info: CardInfo, repo_id: str | None = None) -> str:
    """The whole ``README.md``: YAML header then the Markdown body."""
    meta = card_metadata(stats, info)
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    target = repo_id or "PATH/TO/THIS/FOLDER"
    lines = [f"# {info.name}", "", f"> **Content warning.** {content_warning(info.layout)}", "",
             f"Training data written by `aidsafe export` ({info.layout} rows, {info.style} layout; "
             f"CoT {info.thinking}). Rows follow TRL's conversational formats, so "
             f"`{'SFTTrainer' if info.layout == 'sft' else 'DPOTrainer'}` takes them as they are.", ""]
    if info.layout == "sft" and info.style == "prompt-completion":
        lines += ["`prompt` holds the system and user messages, `completion` the assistant message: "
                  "TRL puts the loss on the completion only, never on the (possibly harmful) prompt.", ""]
    elif info.layout == "sft":
        lines += ["`messages` holds the whole conversation: TRL puts the loss on every token, the prompt "
                  "included, unless `SFTConfig(assistant_only_loss=True)` with a chat template that has "
                  "`{% generation %}` markers.", ""]
    lines += ["```python", "from datasets import load_dataset", "",
              f"ds = load_dataset({target!r})   # or datasets.load_from_disk(folder) on the exported folder",
              "```", "", "## How it was made", ""]
    rows = [("input prompts", f"`{n}`", f"`{h}`" if h else "") for (n, h) in sorted(stats.inputs)]
    rows += [("recipe", f"`{n}`", f"`{h}`") for (n, h) in sorted(stats.recipes)]
    rows += [("policy set", f"`{n}`", f"`{h}`") for (n, h) in sorted(stats.policy_sets)]
    rows += [("model", f"`{role}`", ", ".join(_identity(json.loads(i)) for i in sorted(ids))) for role, ids in
             sorted(stats.models.items())]
    rows += [("engine", e, "") for e in sorted(stats.engines)]
    rows += [("imported from", s, f"{n} records") for s, n in sorted(stats.sources.items())]
    lines += _table(("what", "name", "hash / identity"), rows) if rows else ["No provenance in the records."]
    lines += ["", "## Records", ""]
    lines += _table(("split", "rows"), list(info.splits.items()))
    lines += [""] + _table(("status of the records read", "records"), sorted(stats.statuses.items()))
    if info.skipped:
        lines += ["", "Left out: " + ", ".join(f"{n} {why}" for why, n in sorted(info.skipped.items())) + "."]
    if info.review is not None:
        review = info.review
        lines += ["", "## Human review", "",
                  f"Reviewed in `aidsafe view` ({review.get('file', 'the review file')}): "
                  f"{review.get('rejected', 0)} record(s) rejected and left out, {review.get('edited', 0)} "
                  f"edited by a reviewer (the rows hold the edited text; the originals stay in the review file)"
                  + (f", {review['stale']} label(s) not applied because their record changed since"
                     if review.get("stale") else "") + "."]
    pairs = _intervals(stats.pair_scores)
    if stats.thresholds or pairs:
        lines += ["", "## Preference pairs", ""]
        if stats.thresholds:
            lines += [f"The recipe keeps a pair when the faithfulness judge scores chosen minus rejected at "
                      f"least **{', '.join(map(str, sorted(stats.thresholds, key=str)))}** (the pair stage's "
                      "`margin`); the `margin` column holds each pair's measured gap.", ""]
        if pairs:
            lines += _table(("score (1-5)", "mean [95% CI]", "n"),
                            [(k, _fmt(v), v.n) for k, v in pairs.items()])
    judged = _intervals(stats.judge_scores)
    if judged:
        lines += ["", "## Judge scores", "", "Means over the scored records with 95% percentile-bootstrap "
                  "intervals (as `aidsafe eval` reports them).", ""]
        lines += _table(("metric", "mean [95% CI]", "n", "unscored"),
                        [(k, _fmt(v), v.n, stats.judge_unscored.get(k, 0)) for k, v in judged.items()])
    lines += ["", "## License", "",
              f"Source prompts: **{info.license or 'unknown'}**. "
              + ("Check the license of the prompts you ran before sharing this dataset; "
                 "`aidsafe export --license ID` records it." if not info.license else
                 "Model-written text is subject to the terms of the models listed above."), ""]
    return f"---\n{header}---\n\n" + "\n".join(lines) + "\n"
