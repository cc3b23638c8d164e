"""Cache benchmark (issue 3): cold run, warm rerun and incremental rerun of
``recipes/aidsafe.yaml`` against the local OpenAI-compatible mock server.

What it measures (it prints figures; it never fails on a missed target):

* **cold**: wall time and LM calls the server saw for N records with an empty
  cache;
* **warm**: the same recipe and input into a new output file with the same
  cache: wall time, the cold/warm ratio (target >= 50x), LM calls (target 0),
  and whether the output file is byte-identical to the cold one;
* **incremental**: only the refiner's instructions change: LM calls (target:
  one refine call per record) and, per stage, how many results were computed
  and how many came from the cache (target: only ``refine`` computed).

The model is the mock server (``openai/mock-model`` at its loopback URL) with a
fixed latency per completion, so the cold figure is dominated by simulated
model time and the warm figure by the engine's own overhead.

Usage::

    python performance/cache_bench.py [--records 200] [--latency 0.05] [--workers 8]

Exit status is 0 whenever the runs complete, even if a target is missed
(those lines say MISSED).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import XSTEST, load_prompts, machine_line, verdict, write_inputs, write_recipe  # noqa: E402

from aidsafe import (
    RunOptions,  # noqa: E402
    run,
)
from aidsafe.runtime._process import prepare  # noqa: E402
from aidsafe.runtime._records import Journal  # noqa: E402
from aidsafe.testing.mock_server import MockOpenAIServer  # noqa: E402

WARM_SPEEDUP_TARGET = 50.0




@dataclass
class Measured:
    """One run's figures."""

    label: str
    wall: float
    server_calls: int
    summary: object
    output: Path
    computed: Counter = field(default_factory=Counter)  # stage id -> results computed (new stage entries)
    reached: Counter = field(default_factory=Counter)   # stage id -> records that reached the stage

    @property
    def cached(self) -> Counter:
        return Counter({s: self.reached[s] - self.computed[s] for s in self.reached})




def stage_entries(cache_dir: Path) -> Counter:
    """Stage-result entries in the cache, per stage id (from the entry tags)."""
    import diskcache

    folder = cache_dir / "stages"
    counts: Counter = Counter()
    if not folder.exists():
        return counts
    with diskcache.Cache(str(folder)) as store:
        for key in store.iterkeys():
            _, tag = store.get(key, tag=True)
            if tag and tag.startswith("stage:"):
                counts[tag[len("stage:"):]] += 1
    return counts


def reached_stages(output: Path) -> Counter:
    counts: Counter = Counter()
    with open(output, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                counts.update(json.loads(line)["provenance"]["stages"].keys())
    return counts


def measure(label: str, recipe: Path, inputs: Path, output: Path, cache_dir: Path, workers: int,
            server: MockOpenAIServer) -> Measured:
    before_calls = server.calls
    before_entries = stage_entries(cache_dir)
    options = RunOptions(cache_dir=cache_dir, workers=workers, progress=False)
    started = time.perf_counter()
    summary = run(recipe, inputs, output, options)
    wall = time.perf_counter() - started
    after_entries = stage_entries(cache_dir)
    computed = Counter({s: after_entries[s] - before_entries[s] for s in after_entries})
    return Measured(label, wall, server.calls - before_calls, summary, output,
                    computed=computed, reached=reached_stages(output))


def warm_breakdown(recipe: Path, rows: list[dict], cache_dir: Path, warm_output: Path,
                   tmp: Path) -> list[tuple[str, float]]:
    """Time the parts of a warm rerun one by one, through the engine's public
    pieces: loading and compiling, the stage-cache path of every record, and
    the crash-safe journal (one fsync'd append per record)."""
    out = []
    started = time.perf_counter()
    _, program, cache = prepare(recipe, RunOptions(cache_dir=cache_dir, progress=False))
    out.append(("prepare (load + validate recipe, build models, compile)", time.perf_counter() - started))
    try:
        started = time.perf_counter()
        for row in rows:
            program.run_record(row["prompt"], record_id=row["id"])
        out.append(("run_record, all stages from cache (+ explain-index writes)", time.perf_counter() - started))
        started = time.perf_counter()
        for row in rows:
            program.run_record(row["prompt"], record_id=None)
        out.append(("run_record, all stages from cache (no explain writes)", time.perf_counter() - started))
    finally:
        cache.close()
    records = [json.loads(line) for line in warm_output.read_text(encoding="utf-8").splitlines() if line.strip()]
    journal = Journal(tmp / "breakdown.jsonl")
    started = time.perf_counter()
    for record in records:
        journal.append(record)
    out.append(("Journal.append of every output record (fsync each)", time.perf_counter() - started))
    started = time.perf_counter()
    journal.finalize([str(r["id"]) for r in records], remove=True)
    out.append(("Journal.finalize (ordered atomic output)", time.perf_counter() - started))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200, help="input records (default 200)")
    parser.add_argument("--latency", type=float, default=0.05, help="mock server seconds per completion (default 0.05)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent records (default 8)")
    parser.add_argument("--input", type=Path, default=XSTEST, help="CSV with a `prompt` column (default: XSTest)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (recipe, inputs, outputs, cache)")
    args = parser.parse_args(argv)
    if args.records < 1 or args.workers < 1 or args.latency < 0:
        parser.error("--records and --workers must be >= 1 and --latency >= 0")

    tmp = Path(tempfile.mkdtemp(prefix="aidsafe-cache-bench-"))
    cache_dir = tmp / "cache"
    inputs = tmp / "inputs.jsonl"
    recipe = tmp / "aidsafe-mock.yaml"
    rows = load_prompts(args.records, args.input)
    write_inputs(inputs, rows)

    with MockOpenAIServer(latency=args.latency) as server:
        write_recipe(recipe, server.url)
        print(f"cache bench: {args.records} records, mock latency {args.latency}s, {args.workers} workers, "
              f"server {server.url}, temp {tmp}", flush=True)
        print(machine_line(), flush=True)
        cold = measure("cold", recipe, inputs, tmp / "cold.jsonl", cache_dir, args.workers, server)
        warm = measure("warm", recipe, inputs, tmp / "warm.jsonl", cache_dir, args.workers, server)
        write_recipe(recipe, server.url, refiner_suffix="Prefer fewer, shorter thoughts.")
        incr = measure("incremental", recipe, inputs, tmp / "incremental.jsonl", cache_dir, args.workers, server)

        # Restore the measured recipe so the breakdown replays the warm path.
        write_recipe(recipe, server.url)
        breakdown = warm_breakdown(recipe, rows, cache_dir, warm.output, tmp)

    runs = [cold, warm, incr]
    identical = cold.output.read_bytes() == warm.output.read_bytes()
    ratio = cold.wall / warm.wall if warm.wall > 0 else float("inf")
    refine_reached = incr.reached.get("refine", 0)
    stage_ids = list(dict.fromkeys(s for m in runs for s in m.reached))

    print()
    print(f"{'run':<12} {'wall s':>8} {'rec/s':>8} {'server calls':>13} {'calls (cached)':>15} "
          f"{'stage hits':>10} {'misses':>7}  statuses")
    for m in runs:
        usage = m.summary.usage.total()
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(m.summary.statuses.items()))
        print(f"{m.label:<12} {m.wall:>8.3f} {m.summary.total / m.wall:>8.1f} {m.server_calls:>13} "
              f"{f'{usage.calls} ({usage.cached_calls})':>15} {m.summary.stage_hits:>10} {m.summary.stage_misses:>7}  "
              f"{statuses}")
    print()
    print("per stage, computed / from cache:")
    print(f"{'stage':<14}" + "".join(f"{m.label:>18}" for m in runs))
    for sid in stage_ids:
        print(f"{sid:<14}" + "".join(f"{f'{m.computed[sid]} / {m.cached[sid]}':>18}" for m in runs))
    for m in runs:
        for reason, n in m.summary.failures.most_common(3):
            print(f"  {m.label} failed: {n} x {reason}")

    incr_only_refine = all(incr.computed[s] == 0 for s in stage_ids if s != "refine") and \
        incr.computed["refine"] == refine_reached
    targets = [
        (f"warm rerun >= {WARM_SPEEDUP_TARGET:g}x faster than cold", ratio >= WARM_SPEEDUP_TARGET,
         f"{cold.wall:.3f}s / {warm.wall:.3f}s = {ratio:.1f}x"),
        ("warm rerun makes 0 LM calls", warm.server_calls == 0, f"{warm.server_calls} server call(s)"),
        ("warm output byte-identical to cold", identical,
         f"{cold.output.stat().st_size} vs {warm.output.stat().st_size} bytes"),
        ("incremental: LM calls == refine calls (records)", incr.server_calls == refine_reached,
         f"{incr.server_calls} call(s), {refine_reached} record(s) reached refine"),
        ("incremental: only `refine` computed", incr_only_refine,
         ", ".join(f"{s} {incr.computed[s]} computed" for s in stage_ids)),
        ("cold: every record ok", cold.summary.statuses.get("ok", 0) == cold.summary.total,
         ", ".join(f"{n} {s}" for s, n in sorted(cold.summary.statuses.items()))),
    ]
    print()
    print("targets:")
    for name, ok, detail in targets:
        print(f"  [{verdict(ok):>6}] {name}: {detail}")
    print()
    print(f"where a warm rerun's time goes (serial replays of its parts; warm run took {warm.wall:.3f}s "
          f"with {args.workers} workers):")
    for name, seconds in breakdown:
        print(f"  {name:<58} {seconds:>7.3f}s  ({1000 * seconds / args.records:.2f} ms/record)")
    print(f"\nat the end, {machine_line()}")
    if not identical:
        _first_difference(cold.output, warm.output)
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    return 0


def _first_difference(a: Path, b: Path) -> None:
    """Print where two outputs first differ (the field path), to explain a miss."""
    for number, (la, lb) in enumerate(zip(a.read_text().splitlines(), b.read_text().splitlines()), 1):
        if la != lb:
            ra, rb = json.loads(la), json.loads(lb)
            print(f"  first difference: line {number}, id {ra.get('id')}: {_diff_path(ra, rb)}")
            return


def _diff_path(x, y, path: str = "") -> str:
    if isinstance(x, dict) and isinstance(y, dict):
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                return _diff_path(x.get(key), y.get(key), f"{path}.{key}")
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            if u != v:
                return _diff_path(u, v, f"{path}[{i}]")
    return f"{path or '(record)'}: {json.dumps(x)[:120]} != {json.dumps(y)[:120]}"


if __name__ == "__main__":
    sys.exit(main())
