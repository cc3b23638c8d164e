"""Prefix-caching benchmark (issue 12): the old query-first prompt layout
without the prompt cache against the stable-first layout with it, on the
embedded model and ``recipes/aidsafe.yaml``.

Both sides run the same XSTest prompts in one process each (fresh cache
directories, one worker), with deliberation forced to its full budget
(2 rounds x 2 agents) and no record-level refinement filter (a record a
filter drops would skip the gate's calls on one side only), so both make the
same number of calls per record (parse retries aside). The gate's judge model
gets the side's prompt-cache setting too, so each side loads one model and
the old side has no prompt cache anywhere. Printed per side: prompt tokens sent and evaluated per
record, calls per record, seconds per record, records/hour and peak RSS.

Targets: evaluated prompt tokens per record new <= 20% of old; records/hour
new >= 3x old; the same number of calls per record.

    python performance/prefix_bench.py [--records 6] [--model local:default] [--threads 2|auto]
        [--speculative '{draft: qwen-0.5b}'] [--side both|new]

``--speculative`` gives both models of both sides that ``speculative:``
value (issue 28: ``local:qwen-1.5b`` with its 0.5B draft); ``--side new``
runs only the stable-first side (records/hour of one setting, no targets).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import XSTEST, machine_line  # noqa: E402

VARIANT = """extends: aidsafe.yaml
name: prefix-bench-{side}
prompt_layout: {layout}
models:
  default: {{model: "{model}", temperature: 0.0, max_tokens: 384, threads: {threads}, prompt_cache_mib: {cache}{extra}}}
  judge: {{model: "{model}", temperature: 0.0, max_tokens: 256, threads: {threads}, prompt_cache_mib: {cache}{extra}}}
stages:
  deliberation:
    stop: {{max_rounds: 2, max_turns: 4, max_tokens: 1000000, agreement: {{rule: consecutive, k: 99}}}}
  refine:
    filters: [{{type: dedupe}}]
"""

CHILD = """
import json, resource, sys, time
import aidsafe
recipe, inputs, out, cache = sys.argv[1:5]
t0 = time.perf_counter()
summary = aidsafe.run(recipe, inputs, out, aidsafe.RunOptions(cache_dir=cache, workers=1, progress=False))
seconds = time.perf_counter() - t0
records = [json.loads(line) for line in open(out, encoding="utf-8")]
tok = [r["provenance"]["tokens"] for r in records if r.get("provenance")]
print(json.dumps({"records": len(records), "statuses": dict(summary.statuses), "seconds": seconds,
                  "calls": sum(r["provenance"]["calls"] for r in records if r.get("provenance")),
                  "prompt_tokens": sum(t["input"] for t in tok),
                  "evaluated": sum(t.get("input_evaluated", t["input"]) for t in tok),
                  "per_record": [[t.get("input_evaluated", t["input"]), r["provenance"]["seconds"]]
                                 for t, r in zip(tok, [r for r in records if r.get("provenance")])],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def sample_prompts(n: int, seed: int = 12) -> list[dict]:
    """A fixed, seeded sample of XSTest prompts (safe and unsafe alike)."""
    with open(XSTEST, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("prompt")]
    return [{"id": r["id"], "prompt": r["prompt"]} for r in random.Random(seed).sample(rows, n)]


def run_side(side: str, layout: str, cache_mib: int, args, folder: Path, inputs: Path) -> dict:
    """One layout in its own process (peak RSS is that process's)."""
    recipe = folder / f"{side}.yaml"
    extra = f", speculative: {args.speculative}" if args.speculative else ""
    recipe.write_text(VARIANT.format(side=side, layout=layout, model=args.model, threads=args.threads,
                                     cache=cache_mib, extra=extra), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(recipe), str(inputs), str(folder / f"{side}.jsonl"),
                           str(folder / f"cache-{side}")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=6)
    parser.add_argument("--model", default="local:default")
    parser.add_argument("--threads", default="2", help="a number or auto (default 2, the old setting)")
    parser.add_argument("--speculative", help="a speculative: value for every model, e.g. '{draft: qwen-0.5b}'")
    parser.add_argument("--side", choices=("both", "new"), default="both")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="prefix-bench-") as tmp:
        folder = Path(tmp)
        inputs = folder / "in.jsonl"
        inputs.write_text("".join(json.dumps(r) + "\n" for r in sample_prompts(args.records)), encoding="utf-8")
        sides = {} if args.side == "new" else {
            "old (query_first, no prompt cache)": run_side("old", "query_first", 0, args, folder, inputs)}
        sides["new (stable_first, prompt cache)"] = run_side("new", "stable_first", 512, args, folder, inputs)
    print(f"{'side':<38} {'sent/rec':>9} {'evaluated/rec':>14} {'calls/rec':>10} {'s/rec':>7} {'rec/hour':>9} "
          f"{'peak RSS MB':>12}  statuses")
    per = {}
    for name, r in sides.items():
        n = max(r["records"], 1)
        per[name] = {"eval": r["evaluated"] / n, "calls": r["calls"] / n, "rph": 3600 * n / r["seconds"]}
        print(f"{name:<38} {r['prompt_tokens'] / n:>9.0f} {r['evaluated'] / n:>14.0f} {r['calls'] / n:>10.2f} "
              f"{r['seconds'] / n:>7.1f} {per[name]['rph']:>9.1f} {r['peak_rss_mb']:>12.0f}  {r['statuses']}")
    print("\nper record (evaluated prompt tokens / seconds), in input order:")
    for name, r in sides.items():
        print(f"  {name:<36} " + "  ".join(f"{e}/{sec:.0f}s" for e, sec in r["per_record"]))
    warm = {}
    for name, r in sides.items():
        rest = r["per_record"][1:]
        if rest:
            warm[name] = (sum(e for e, _ in rest) / len(rest), sum(sec for _, sec in rest) / len(rest))
    if len(warm) == 2:
        (eo, so), (en, sn) = warm.values()
        print(f"after the first record (every role's prefix read once): evaluated new/old = {en / eo:.2f}, "
              f"seconds per record new/old = {sn / so:.2f} ({so / sn:.2f}x the records/hour); not the target, "
              f"which counts every record")
    if len(per) < 2:
        print(machine_line())
        return 0
    old, new = per["old (query_first, no prompt cache)"], per["new (stable_first, prompt cache)"]
    ratio_eval = new["eval"] / old["eval"]
    ratio_rph = new["rph"] / old["rph"]
    checks = [(f"evaluated prompt tokens per record new/old = {ratio_eval:.2f}", ratio_eval <= 0.20, "<= 0.20"),
              (f"records/hour new/old = {ratio_rph:.2f}", ratio_rph >= 3.0, ">= 3.0"),
              (f"calls per record old {old['calls']:.2f} vs new {new['calls']:.2f}",
               abs(old["calls"] - new["calls"]) < 1e-9, "equal")]
    for text, ok, target in checks:
        print(f"{text:<60} target {target:<8} {'MET' if ok else 'MISSED'}")
    print(machine_line())
    return 0  # a benchmark measures: a missed target is printed, never an exit status


if __name__ == "__main__":
    sys.exit(main())
