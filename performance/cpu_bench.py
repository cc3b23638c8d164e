"""CPU per LM call (issue 12): what the engine itself costs per call, with the
model's time taken out.

``recipes/aidsafe.yaml`` runs against the mock OpenAI-compatible server in a
child process (so the server's CPU is not counted), with no latency, 8
workers and a fresh cache directory, first with the cache and then with
``--no-cache``. The figure is this process's CPU time (all threads, the cache
writer included) divided by the LM calls the server answered. A short warm-up
run (4 records, its own cache) loads DSPy and the recipe first.

Target: at most 3 ms of CPU per LM call with the cache on this machine.

    python performance/cpu_bench.py [--records 200] [--workers 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import XSTEST, ServerProcess, load_prompts, machine_line, verdict, write_inputs, write_recipe  # noqa: E402

from aidsafe import RunOptions, run  # noqa: E402

TARGET_MS = 3.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    print(machine_line(), flush=True)
    figures = {}
    with ServerProcess(latency=0.0) as server, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recipe = tmp / "aidsafe-mock.yaml"
        write_recipe(recipe, server.url, args.workers)
        inputs = tmp / "inputs.jsonl"
        write_inputs(inputs, load_prompts(args.records, XSTEST))
        run(recipe, inputs, tmp / "warm-up.jsonl",
            RunOptions(cache_dir=tmp / "warm-up", workers=args.workers, progress=False, limit=4))
        for label, use_cache in (("with the cache", True), ("--no-cache", False)):
            before = server.calls
            cpu = time.process_time()
            wall = time.perf_counter()
            summary = run(recipe, inputs, tmp / f"{use_cache}.jsonl",
                          RunOptions(cache_dir=tmp / f"cache-{use_cache}", workers=args.workers, progress=False,
                                     use_cache=use_cache))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            calls = server.calls - before
            figures[label] = 1000 * cpu / max(calls, 1)
            print(f"{label:<16} {summary.total} records, {calls} LM calls, {wall:.2f} s wall, "
                  f"{cpu:.2f} s CPU -> {figures[label]:.2f} ms per call", flush=True)
    print("\ntargets:")
    ms = figures["with the cache"]
    print(f"  [{verdict(ms <= TARGET_MS):>6}] CPU per LM call with the cache <= {TARGET_MS} ms: {ms:.2f} ms "
          f"(--no-cache: {figures['--no-cache']:.2f} ms)")
    print(f"\nat the end, {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
