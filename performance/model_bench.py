"""Embedded-model benchmark (issue 4): generation speed of the in-process
llama.cpp model, then the full ``recipes/aidsafe.yaml`` pipeline on a few
XSTest prompts with a fresh cache.

What it prints:

* **generation**: a few direct completions through the engine's caching
  engine (cache off): prompt and generated tokens, seconds, tokens/s, finish
  reason, and llama.cpp's own prompt/generation speeds;
* **pipeline**: per record and per stage, seconds and tokens (from each
  output record's ``provenance.stages``), LM calls per record, deliberation
  stop reasons, statuses; then total wall time, records/hour and tokens/s.

The embedded model is slow on a small CPU (a record can take a minute), so the
defaults are small. The weights are assembled once into ``--weights-dir``
(default: the engine's default cache directory) and shared with the fresh
temporary run cache through a symlink, so the benchmark does not re-assemble
491 MB each time.

Usage::

    python performance/model_bench.py [--model local:default|local:smoke] [--records 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import XSTEST, machine_line, write_inputs  # noqa: E402
from dspy.lm15 import Config, Message, Request  # noqa: E402

from aidsafe import Cache, RunOptions, run  # noqa: E402
from aidsafe._util.paths import default_cache_dir  # noqa: E402
from aidsafe.config._specs import ModelSpec  # noqa: E402
from aidsafe.models._engine import UsageMeter, build_models, metering  # noqa: E402

RECIPE = ROOT / "recipes" / "aidsafe.yaml"

# Short, ordinary prompts: generation speed, not quality, is measured here.
GEN_PROMPTS = [
    "Explain in three sentences why the sky looks blue.",
    "List five safety tips for using a kitchen knife.",
    "Write a short paragraph about the history of the bicycle.",
]




def pick_prompts(n: int, source: Path) -> list[dict]:
    """``n`` XSTest rows alternating safe / unsafe labels (file order within
    each), so a tiny sample still sees both kinds."""
    with open(source, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("prompt")]
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row.get("label") or "?", []).append(row)
    labels = sorted(by_label)
    picked: list[dict] = []
    i = 0
    while len(picked) < n and any(by_label.values()):
        bucket = by_label[labels[i % len(labels)]]
        if bucket:
            row = bucket.pop(0)
            picked.append({"id": f"xstest-{row['id']}", "prompt": row["prompt"], "label": row.get("label")})
        i += 1
    return picked


def link_weights(run_cache: Path, weights_dir: Path) -> None:
    """Let a fresh run cache reuse already-assembled weights (``models/``)."""
    (weights_dir / "models").mkdir(parents=True, exist_ok=True)
    run_cache.mkdir(parents=True, exist_ok=True)
    (run_cache / "models").symlink_to((weights_dir / "models").resolve(), target_is_directory=True)


def bench_generation(model: str, weights_dir: Path, max_tokens: int, tmp: Path) -> list[dict]:
    """Direct completions through the engine (CachingEngine over the local
    backend, cache disabled so every call generates)."""
    cache_dir = tmp / "gen-cache"
    link_weights(cache_dir, weights_dir)
    spec = ModelSpec(name="default", model=model, params={"temperature": 0.0, "max_tokens": max_tokens})
    started = time.perf_counter()
    handle = build_models({"default": spec}, Cache(cache_dir, enabled=False))["default"]
    resolve_seconds = time.perf_counter() - started
    engine = handle.engine
    # A one-token call loads the model so the timed calls measure generation only.
    started = time.perf_counter()
    engine.complete(Request(model=model, messages=(Message.user("Hi"),), config=Config(max_tokens=1, temperature=0.0)))
    warm_seconds = time.perf_counter() - started
    print(f"  weights resolved in {resolve_seconds:.2f}s, model loaded + first call {warm_seconds:.2f}s "
          f"(load {getattr(engine.inner, 'load_seconds', None) or 0:.2f}s)")
    results = []
    for prompt in GEN_PROMPTS:
        request = Request(model=model, messages=(Message.user(prompt),),
                          config=Config(max_tokens=max_tokens, temperature=0.0))
        meter = UsageMeter()
        started = time.perf_counter()
        with metering(meter):
            response = engine.complete(request)
        seconds = time.perf_counter() - started
        usage = meter.total()
        timings = (response.provider_data or {}).get("timings", {}) if response.provider_data else {}
        results.append({
            "prompt": prompt, "prompt_tokens": usage.input_tokens, "generated_tokens": usage.output_tokens,
            "seconds": seconds, "tok_s": usage.output_tokens / seconds if seconds else 0.0,
            "finish": response.finish_reason,
            "llama_prompt_tok_s": timings.get("prompt_per_second"),
            "llama_gen_tok_s": timings.get("predicted_per_second"),
        })
    return results


def bench_pipeline(model: str, weights_dir: Path, n: int, tmp: Path, source: Path):
    rows = pick_prompts(n, source)
    inputs = tmp / "inputs.jsonl"
    write_inputs(inputs, [{"id": row["id"], "prompt": row["prompt"]} for row in rows])
    cache_dir = tmp / "run-cache"
    link_weights(cache_dir, weights_dir)
    output = tmp / "out.jsonl"
    options = RunOptions(cache_dir=cache_dir, workers=1, progress=False, model_overrides={"default": model})
    started = time.perf_counter()
    summary = run(RECIPE, inputs, output, options)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows, records, summary, wall, computed_calls(cache_dir)


def computed_calls(cache_dir: Path) -> dict:
    """What the model really computed: the run cache started empty, so its
    call entries are exactly the distinct completions generated. (Provenance
    and the usage meter also count calls answered from the call cache, with
    the tokens and seconds of the original call.)"""
    import diskcache

    out = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "seconds": 0.0, "finish": Counter()}
    folder = cache_dir / "calls"
    if not folder.exists():
        return out
    with diskcache.Cache(str(folder)) as store:
        for key in store.iterkeys():
            try:
                value = json.loads(store.get(key))
            except (TypeError, ValueError):
                continue
            response = value.get("response") or {}
            usage = response.get("usage") or {}
            out["calls"] += 1
            out["input_tokens"] += usage.get("input_tokens") or 0
            out["output_tokens"] += usage.get("output_tokens") or 0
            out["seconds"] += value.get("seconds") or 0.0
            out["finish"][response.get("finish_reason") or "?"] += 1
    return out


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local:default", help="local:default (default) or local:smoke, or local:PATH.gguf")
    parser.add_argument("--records", type=int, default=3, help="XSTest prompts through aidsafe.yaml (default 3)")
    parser.add_argument("--gen-tokens", type=int, default=128, help="max tokens per direct completion (default 128)")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="where the default model's weights are assembled once (default: the engine's cache dir)")
    parser.add_argument("--input", type=Path, default=XSTEST, help="CSV with `prompt` (and `label`) columns")
    parser.add_argument("--skip-generation", action="store_true", help="only run the pipeline part")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (inputs, output, run cache)")
    args = parser.parse_args(argv)
    if args.records < 0 or args.gen_tokens < 1:
        parser.error("--records must be >= 0 and --gen-tokens >= 1")
    if not args.model.startswith("local:"):
        parser.error("--model must be a local:... model (this benchmark measures the embedded engine)")
    weights_dir = args.weights_dir or default_cache_dir()
    tmp = Path(tempfile.mkdtemp(prefix="aidsafe-model-bench-"))
    print(f"model bench: {args.model}, {args.records} record(s), weights in {weights_dir}, temp {tmp}", flush=True)

    print(machine_line(), flush=True)
    try:
        if not args.skip_generation:
            print("\ngeneration (direct completions through the engine, temperature 0):", flush=True)
            gen = bench_generation(args.model, weights_dir, args.gen_tokens, tmp)
            print(f"  {'prompt tok':>10} {'gen tok':>8} {'seconds':>8} {'tok/s':>7} {'finish':>8} "
                  f"{'llama prompt tok/s':>19} {'llama gen tok/s':>16}  prompt")
            for r in gen:
                print(f"  {r['prompt_tokens']:>10} {r['generated_tokens']:>8} {r['seconds']:>8.2f} {r['tok_s']:>7.1f} "
                      f"{str(r['finish']):>8} {fmt(r['llama_prompt_tok_s']):>19} {fmt(r['llama_gen_tok_s']):>16}  "
                      f"{r['prompt'][:40]}")
            total_gen = sum(r["generated_tokens"] for r in gen)
            total_s = sum(r["seconds"] for r in gen)
            print(f"  overall: {total_gen} generated tokens in {total_s:.2f}s = {total_gen / total_s:.1f} tok/s "
                  f"(end to end, prompt processing included)")

        if args.records:
            print(f"\npipeline: {RECIPE.relative_to(ROOT)} on {args.records} XSTest prompt(s), fresh cache, 1 worker "
                  f"(this takes a while)...", flush=True)
            rows, records, summary, wall, computed = bench_pipeline(args.model, weights_dir, args.records, tmp,
                                                                    args.input)
            report_pipeline(rows, records, summary, wall, computed)
        print(f"\nat the end, {machine_line()}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _turn(entry: dict) -> str:
    action = entry.get("action", "?")
    if action == "revise" and not entry.get("changed", True):
        action = "revise(no change)"
    return f"r{entry.get('round')} {entry.get('agent')}: {action}"


def _stage_cell(stage: dict | None) -> str:
    return "-" if stage is None else f"{stage['seconds']:.1f}s / {stage['tokens']}"


def report_pipeline(rows: list[dict], records: list[dict], summary, wall: float, computed: dict) -> None:
    labels = {r["id"]: r.get("label") for r in rows}
    stage_ids = list(dict.fromkeys(s for rec in records for s in rec["provenance"]["stages"]))
    header = f"  {'record':<12} {'label':<7} {'status':<8} {'calls':>5} {'tokens in/out':>14} {'seconds':>8}  "
    header += "".join(f"{s[:12]:>16}" for s in stage_ids) + "  stop reason"
    print("\nper record (stage columns: seconds / tokens):")
    print(header)
    for rec in records:
        prov = rec["provenance"]
        cells = "".join(f"{_stage_cell(prov['stages'].get(s)):>16}" for s in stage_ids)
        stop = rec.get("stop_reason") or (rec.get("deliberation") or {}).get("stop_reason") or "-"
        tokens = f"{prov['tokens']['input']}/{prov['tokens']['output']}"
        print(f"  {rec['id']:<12} {str(labels.get(rec['id'])):<7} {rec['status']:<8} {prov['calls']:>5} {tokens:>14} "
              f"{prov['seconds']:>8.1f}  {cells}  {stop}")
        log = (rec.get("deliberation") or {}).get("log") or []
        if log:
            print("      deliberation: " + ", ".join(_turn(t) for t in log))
        if rec.get("error"):
            err = rec["error"]
            print(f"      error: {err.get('type')} in stage {err.get('stage')}: {str(err.get('message'))[:160]}")

    n = len(records) or 1
    print("\nper stage (over all records):")
    print(f"  {'stage':<14} {'records':>7} {'seconds':>9} {'s/record':>9} {'tokens':>8} {'tok/record':>10} {'share of time':>13}")
    all_seconds = sum(r["provenance"]["seconds"] for r in records) or 1.0
    for sid in stage_ids:
        present = [r["provenance"]["stages"][sid] for r in records if sid in r["provenance"]["stages"]]
        secs = sum(p["seconds"] for p in present)
        toks = sum(p["tokens"] for p in present)
        print(f"  {sid:<14} {len(present):>7} {secs:>9.1f} {secs / max(len(present), 1):>9.1f} {toks:>8} "
              f"{toks / max(len(present), 1):>10.0f} {100 * secs / all_seconds:>12.0f}%")

    calls = [r["provenance"]["calls"] for r in records]
    tok_in = sum(r["provenance"]["tokens"]["input"] for r in records)
    tok_out = sum(r["provenance"]["tokens"]["output"] for r in records)
    stops = Counter((r.get("deliberation") or {}).get("stop_reason") or "(no deliberation)" for r in records)
    turns = [(r.get("deliberation") or {}).get("turns") for r in records if r.get("deliberation")]
    statuses = Counter(r["status"] for r in records)
    print("\ntotals:")
    print(f"  records: {len(records)} ({', '.join(f'{v} {k}' for k, v in sorted(statuses.items()))})")
    print(f"  wall time: {wall:.1f}s (includes loading the model), {wall / n:.1f}s/record, "
          f"{3600 * len(records) / wall:.1f} records/hour")
    if calls:
        print(f"  LM calls per record: mean {statistics.mean(calls):.1f}, min {min(calls)}, max {max(calls)}; "
              f"deliberation turns: {turns}")
    print(f"  stop reasons: {', '.join(f'{k} x{v}' for k, v in stops.most_common())}")
    print(f"  tokens in provenance (cached replays included): {tok_in} in + {tok_out} out = {tok_in + tok_out}")
    for model, u in sorted(summary.usage.by_model.items()):
        print(f"  model {model}: {u.calls} call(s), {u.cached_calls} of them answered from the call cache "
              f"(an identical prompt earlier in the run)")
    if computed["calls"]:
        c = computed
        print(f"  computed by the model: {c['calls']} completion(s), {c['input_tokens']} prompt + "
              f"{c['output_tokens']} generated tokens in {c['seconds']:.1f}s of calls "
              f"= {c['output_tokens'] / c['seconds']:.1f} generated tok/s, "
              f"{(c['input_tokens'] + c['output_tokens']) / c['seconds']:.1f} total tok/s; "
              f"{c['output_tokens'] / wall:.1f} generated tok/s over the wall time")
        print(f"  completion finish reasons: {', '.join(f'{k} x{v}' for k, v in c['finish'].most_common())}"
              f" (length = cut at max_tokens)")
    for reason, count in summary.failures.most_common():
        print(f"  failed: {count} x {reason}")


if __name__ == "__main__":
    sys.exit(main())
