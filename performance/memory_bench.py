"""Memory benchmark (issue 8): peak RSS of ``engine.run`` for 1k versus 10k
records; the growth must stay under 50 MB (memory must not grow with the
input: records stream through a bounded window and go to the journal).

Each size runs in a fresh Python subprocess, so the peaks do not mix; the
mock server (latency 0) runs in this parent process, so its request log is
not counted. The child measures its own peak RSS (``VmHWM`` from
``/proc/self/status``, falling back to ``ru_maxrss``), its RSS after imports
and after the run, and samples RSS every ``--sample-every`` finished records
to show whether RSS climbs with the record count.

The recipe is ``recipes/baseline.yaml`` by default (one LM call per record:
one generate agent, then a filter stage), the cheap variant that makes 10k
records affordable on a small machine; ``--recipe aidsafe`` runs the full
pipeline (5 calls per record with the mock's answers). The call and stage
cache is on (a fresh temp directory per size), as in a normal run.

Usage::

    python performance/memory_bench.py [--sizes 1000,10000] [--workers 8] [--recipe baseline|aidsafe]

Exit status is 0 whenever the runs complete, even if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"baseline": ROOT / "recipes" / "baseline.yaml", "aidsafe": ROOT / "recipes" / "aidsafe.yaml"}
GROWTH_TARGET_MB = 50.0


def proc_status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` figure in kB (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_kb() -> int:
    hwm = proc_status_kb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


# --------------------------------------------------------------- the child

def child(args) -> int:
    """Run one size and print one JSON line of figures (last line of stdout)."""
    sys.path.insert(0, str(ROOT))
    import dspy

    from aidsafe import RunOptions, run

    if args.no_dspy_history:
        # Diagnostic: DSPy keeps every call (messages, request, response) in
        # per-LM, per-module and global histories of up to 10,000 entries each.
        dspy.configure(disable_history=True)
    if args.no_dspy_trace:
        # Diagnostic: every Predict call appends (module, inputs, prediction)
        # to dspy.settings.trace, up to 10,000 entries.
        dspy.configure(trace=None)
    rss_imported = proc_status_kb("VmRSS")
    samples: list[tuple[int, int]] = []
    done = 0

    def on_record(record: dict) -> None:
        nonlocal done
        done += 1
        if done % args.sample_every == 0:
            samples.append((done, proc_status_kb("VmRSS") or 0))

    options = RunOptions(cache_dir=Path(args.cache_dir), use_cache=not args.no_cache, workers=args.workers,
                         progress=False)
    started = time.perf_counter()
    summary = run(Path(args.recipe_file), Path(args.input), Path(args.output), options, on_record=on_record)
    wall = time.perf_counter() - started
    with open(args.output, encoding="utf-8") as handle:
        lines = sum(1 for line in handle if line.strip())
    print(json.dumps({
        "records": summary.total, "lines": lines, "statuses": dict(summary.statuses), "wall": wall,
        "rss_imported_kb": rss_imported, "rss_end_kb": proc_status_kb("VmRSS"), "peak_kb": peak_rss_kb(),
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "samples": samples,
        "calls": summary.usage.total().calls,
    }))
    return 0


# -------------------------------------------------------------- the parent

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated record counts (default 1000,10000)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent records (default 8)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="baseline", help="recipe variant (default baseline)")
    parser.add_argument("--sample-every", type=int, default=500, help="sample RSS every N finished records")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per size (default 600)")
    parser.add_argument("--no-dspy-history", action="store_true",
                        help="diagnostic: run the engine with dspy.configure(disable_history=True)")
    parser.add_argument("--no-dspy-trace", action="store_true",
                        help="diagnostic: run the engine with dspy.configure(trace=None)")
    parser.add_argument("--no-cache", action="store_true", help="diagnostic: run with the call/stage cache off")
    # Child mode (internal): run one size with the files the parent prepared.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--recipe-file", "--input", "--output", "--cache-dir"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes: expected integers, e.g. 1000,10000")
    if not sizes or min(sizes) < 1 or args.workers < 1 or args.sample_every < 1:
        parser.error("--sizes, --workers and --sample-every must be >= 1")

    # Only the parent uses the shared harness and the mock server; the child
    # imports nothing but the engine.
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import (
        XSTEST,
        load_prompts,
        machine_line,
        verdict,
        write_inputs,
        write_recipe,
    )

    from aidsafe.testing.mock_server import MockOpenAIServer

    tmp = Path(tempfile.mkdtemp(prefix="aidsafe-memory-bench-"))
    results = []
    with MockOpenAIServer(latency=0.0) as server:
        print(f"memory bench: sizes {sizes}, recipe {args.recipe}, {args.workers} workers, mock latency 0, "
              f"server {server.url}" + (", DSPy history OFF (diagnostic)" if args.no_dspy_history else "")
              + (", DSPy trace OFF (diagnostic)" if args.no_dspy_trace else "")
              + (", cache OFF (diagnostic)" if args.no_cache else ", cache on"), flush=True)
        print(machine_line(), flush=True)
        for n in sizes:
            folder = tmp / f"n{n}"
            folder.mkdir()
            write_inputs(folder / "inputs.jsonl", load_prompts(n, XSTEST))
            write_recipe(folder / "recipe.yaml", server.url, args.workers, source=RECIPES[args.recipe])
            before = server.calls
            command = [sys.executable, str(Path(__file__).resolve()), "--child", "--workers", str(args.workers),
                       "--sample-every", str(args.sample_every),
                       *(["--no-dspy-history"] if args.no_dspy_history else []),
                       *(["--no-dspy-trace"] if args.no_dspy_trace else []),
                       *(["--no-cache"] if args.no_cache else []), "--recipe-file", str(folder / "recipe.yaml"),
                       "--input", str(folder / "inputs.jsonl"), "--output", str(folder / "out.jsonl"),
                       "--cache-dir", str(folder / "cache")]
            env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            try:
                proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=args.timeout, env=env)
            except subprocess.TimeoutExpired:
                print(f"  {n} records: still running after {args.timeout:.0f}s; stopped", flush=True)
                results.append((n, None))
                continue
            if proc.returncode != 0 or not proc.stdout.strip():
                print(f"  {n} records: child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
                results.append((n, None))
                continue
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            figures["server_calls"] = server.calls - before
            results.append((n, figures))
            print(f"  {n} records: peak {figures['peak_kb'] / 1024:.1f} MB, {figures['wall']:.1f}s", flush=True)
            shutil.rmtree(folder / "cache", ignore_errors=True)

    print()
    print(f"{'records':>8} {'after imports MB':>17} {'peak RSS MB':>12} {'end RSS MB':>11} {'wall s':>8} "
          f"{'rec/s':>7} {'server calls':>13} {'out lines':>10}  statuses")
    for n, f in results:
        if f is None:
            print(f"{n:>8}  (no result)")
            continue
        statuses = ", ".join(f"{c} {s}" for s, c in sorted(f["statuses"].items()))
        print(f"{n:>8} {f['rss_imported_kb'] / 1024:>17.1f} {f['peak_kb'] / 1024:>12.1f} {f['rss_end_kb'] / 1024:>11.1f} "
              f"{f['wall']:>8.1f} {n / f['wall']:>7.1f} {f['server_calls']:>13} {f['lines']:>10}  {statuses}")
    print()
    print("RSS (MB) sampled as records finished:")
    for n, f in results:
        if f and f["samples"]:
            points = f["samples"]
            shown = points if len(points) <= 10 else points[:: max(1, len(points) // 10)] + [points[-1]]
            print(f"  {n:>6}: " + "  ".join(f"{k}:{kb / 1024:.0f}" for k, kb in shown))
            if len(points) >= 4:
                # Slope over the second half: start-up growth (imports, first
                # connections, SQLite pages) is over by then.
                (k0, r0), (k1, r1) = points[len(points) // 2], points[-1]
                if k1 > k0:
                    print(f"          slope over the second half: {(r1 - r0) / 1024 / (k1 - k0) * 1000:+.2f} MB per 1k records")

    print()
    print("targets:")
    done = [(n, f) for n, f in results if f]
    if len(done) >= 2:
        (n0, f0), (n1, f1) = done[0], done[-1]
        growth = (f1["peak_kb"] - f0["peak_kb"]) / 1024
        ok = growth < GROWTH_TARGET_MB
        print(f"  [{verdict(ok):>6}] peak RSS growth {n0} -> {n1} records < {GROWTH_TARGET_MB:g} MB: "
              f"{f0['peak_kb'] / 1024:.1f} -> {f1['peak_kb'] / 1024:.1f} MB ({growth:+.1f} MB)")
    else:
        print("  [MISSED] peak RSS growth: fewer than two sizes completed")
    for n, f in done:
        complete = f["lines"] == n and sum(f["statuses"].values()) == n
        print(f"  [{verdict(complete):>6}] {n} records: one output line per input: {f['lines']} lines")
    print(f"\nat the end, {machine_line()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
