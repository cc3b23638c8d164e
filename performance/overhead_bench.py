"""Engine overhead benchmark (issue 8): the AIDSAFE recipe run through
``engine.run`` versus the same pipeline hand-written directly in DSPy.

Both sides talk to the same local mock server (``openai/mock-model`` at its
loopback URL, fixed latency per completion), with the same number of workers
and no caches (``RunOptions(use_cache=False)`` for ours, ``cache=False`` on the
hand-written ``dspy.LM``). The hand-written side uses ``dspy.Predict`` on
class-based signatures with the same fields, descriptions and instructions
(read from ``recipes/aidsafe.yaml``), ``JSONAdapter`` with the engine's
stable-first layout, and the same calls per record in the same order:
intents, initial thoughts, deliberation turns (two agents, stop when two agree
in a row, at most 2 rounds / 4 turns), refiner with the recipe's deterministic
filters before and after.

What it prints (it measures; it never fails on a missed target):

* wall time of each side per round and the median over rounds (each side's
  time covers everything from loading to the last output line: ours includes
  recipe load/compile, the fsync'd journal and the atomic output; the
  hand-written side writes plain JSONL);
* the ratio ours / hand-written (target <= 1.05);
* LM calls the server saw for each side (they must match), and whether the
  request bodies (messages + sampling parameters) were identical.

Usage::

    python performance/overhead_bench.py [--records 100] [--latency 0.05] [--workers 8] [--rounds 3]

Exit status is 0 whenever the runs complete, even if a target is missed.

The harness (prompts, recipe rewriting, request digests) and the hand-written
pipeline come from ``_common.py``, which every script in ``performance/`` shares.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    XSTEST,
    body_digest,
    load_prompts,
    machine_line,
    run_handwritten,
    verdict,
    write_inputs,
    write_recipe,
)

from aidsafe import RunOptions, run  # noqa: E402
from aidsafe.testing import mock_server  # noqa: E402
from aidsafe.testing.mock_server import MockOpenAIServer  # noqa: E402

RATIO_TARGET = 1.05


# ------------------------------------------------------------------ measure

@dataclass
class Side:
    """One run of one side."""

    wall: float
    cpu: float  # this process's CPU seconds (the mock server's threads included, alike for both sides)
    calls: int
    requests: int
    statuses: Counter
    digests: Counter


def measure(fn, server: MockOpenAIServer) -> Side:
    server.reset()
    cpu0 = time.process_time()
    started = time.perf_counter()
    statuses = fn()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    with server._lock:  # the log is appended to under this lock
        digests = Counter(body_digest(b) for b in server.log)
    return Side(wall, cpu, server.calls, server.requests, statuses, digests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100, help="input records (default 100)")
    parser.add_argument("--latency", type=float, default=0.05, help="mock seconds per completion (default 0.05)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent records (default 8)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating measured rounds per side; the median is compared (default 3)")
    parser.add_argument("--input", type=Path, default=XSTEST, help="CSV with a `prompt` column (default: XSTest)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    if args.records < 1 or args.workers < 1 or args.latency < 0 or not 1 <= args.rounds <= 20:
        parser.error("--records/--workers >= 1, --latency >= 0, --rounds 1..20")
    if args.records * 5 > mock_server.LOG_LIMIT:
        parser.error(f"--records above {mock_server.LOG_LIMIT // 5} overflows the server's request log")

    tmp = Path(tempfile.mkdtemp(prefix="aidsafe-overhead-bench-"))
    rows = load_prompts(args.records, args.input)
    inputs = tmp / "inputs.jsonl"
    write_inputs(inputs, rows)
    recipe = tmp / "aidsafe-mock.yaml"

    with MockOpenAIServer(latency=args.latency) as server:
        recipe_data = write_recipe(recipe, server.url, args.workers)
        print(f"overhead bench: {args.records} records, mock latency {args.latency}s, {args.workers} workers, "
              f"{args.rounds} round(s), server {server.url}", flush=True)
        print(machine_line(), flush=True)

        def ours(out: Path, limit: int | None = None):
            options = RunOptions(cache_dir=tmp / "cache", use_cache=False, workers=args.workers,
                                 progress=False, limit=limit)
            return run(recipe, inputs, out, options).statuses

        def theirs(out: Path, limit: int | None = None):
            return run_handwritten(recipe_data, server.url, rows[:limit] if limit else rows, out, args.workers)

        # Warm-up: lazy imports and client set-up must not land on whichever side runs first.
        ours(tmp / "warm-ours.jsonl", limit=2)
        theirs(tmp / "warm-theirs.jsonl", limit=2)

        results: dict[str, list[Side]] = {"aidsafe.run": [], "hand-written DSPy": []}
        for r in range(args.rounds):
            # Alternate the order so drift in machine load hits both sides alike.
            order = [("aidsafe.run", ours), ("hand-written DSPy", theirs)]
            if r % 2:
                order.reverse()
            for label, fn in order:
                side = measure(lambda fn=fn, out=tmp / f"{label[:4]}-{r}.jsonl": fn(out), server)
                results[label].append(side)
                print(f"  round {r + 1} {label:<18} {side.wall:7.3f}s  {side.calls} calls", flush=True)

    ideal_calls_per_record = None
    print()
    print(f"{'side':<18} {'median s':>9} {'min s':>8} {'max s':>8} {'rec/s':>7} {'CPU ms/rec':>11} "
          f"{'server calls':>13} {'calls/rec':>9}  statuses")
    medians = {}
    for label, sides in results.items():
        med = statistics.median(s.wall for s in sides)
        medians[label] = med
        calls = sides[0].calls
        ideal_calls_per_record = ideal_calls_per_record or calls / args.records
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(sides[0].statuses.items()))
        cpu_ms = 1000 * statistics.median(s.cpu for s in sides) / args.records
        print(f"{label:<18} {med:>9.3f} {min(s.wall for s in sides):>8.3f} {max(s.wall for s in sides):>8.3f} "
              f"{args.records / med:>7.1f} {cpu_ms:>11.1f} {calls:>13} {calls / args.records:>9.2f}  {statuses}")

    ours_sides, theirs_sides = results["aidsafe.run"], results["hand-written DSPy"]
    ratio = medians["aidsafe.run"] / medians["hand-written DSPy"]
    calls_match = all(a.calls == b.calls for a, b in zip(ours_sides, theirs_sides))
    same_bodies = ours_sides[0].digests == theirs_sides[0].digests
    shared = sum((ours_sides[0].digests & theirs_sides[0].digests).values())
    floor = args.records / args.workers * ideal_calls_per_record * args.latency
    cpu_ours = 1000 * statistics.median(s.cpu for s in ours_sides) / args.records
    cpu_theirs = 1000 * statistics.median(s.cpu for s in theirs_sides) / args.records
    print()
    print(f"latency floor (records / workers x calls/record x latency): {floor:.3f}s")
    print(f"CPU per record (this process, server threads included): ours {cpu_ours:.1f} ms vs hand-written "
          f"{cpu_theirs:.1f} ms ({cpu_ours - cpu_theirs:+.1f} ms); it shows in wall time only when CPU-bound")
    print("targets:")
    print(f"  [{verdict(ratio <= RATIO_TARGET):>6}] ours / hand-written <= {RATIO_TARGET:g}: "
          f"{medians['aidsafe.run']:.3f}s / {medians['hand-written DSPy']:.3f}s = {ratio:.3f}")
    print(f"  [{verdict(calls_match):>6}] LM calls seen by the server match: "
          + ", ".join(f"{a.calls} vs {b.calls}" for a, b in zip(ours_sides, theirs_sides)))
    print(f"  [{verdict(same_bodies):>6}] request bodies identical (messages + sampling params): "
          f"{shared} of {sum(ours_sides[0].digests.values())} shared")
    print(f"\nat the end, {machine_line()}")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
