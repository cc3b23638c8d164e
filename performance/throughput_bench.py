"""Throughput benchmark (issue 8): records/s of ``recipes/aidsafe.yaml`` with
16 workers against a mock server with 200 ms latency, versus the ideal.

ideal records/s = workers / (latency x LM calls per record), with calls per
record measured from the mock server's counter (the AIDSAFE recipe makes 5
with the mock's answers: intents, initial, two agreeing deliberators,
refiner). Target: achieved >= 90% of ideal.

Two figures are printed: the whole run (``engine.run`` from loading the
recipe to the atomic output) and the steady state (completions between the
end of the first wave of ``workers`` records and the start of the last wave,
which leaves out start-up and the ramp-down). The target is judged on the
whole run. For reference, the same pipeline hand-written in DSPy
(``_common.HandWritten``, the one ``overhead_bench.py`` compares against)
then runs under the same conditions, so a miss can be told apart from what
DSPy, the mock server and the machine cost anyway (``--no-compare`` skips it).

The mock server runs in a thread of this process by default, as a test
would; ``--server process`` runs it in a child process so its CPU time does
not compete with the engine's for this interpreter's GIL.

Usage::

    python performance/throughput_bench.py [--records 160] [--latency 0.2] [--workers 16] \
        [--server thread|process] [--no-compare]

Exit status is 0 whenever the run completes, even if a target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (the hand-written reference, and DSPy, load only when compared)
from _common import XSTEST, ServerProcess, load_prompts, machine_line, verdict, write_inputs, write_recipe  # noqa: E402

from aidsafe import RunOptions, run  # noqa: E402
from aidsafe.testing.mock_server import MockOpenAIServer  # noqa: E402

TARGET = 0.90


# --------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=160, help="input records (default 160)")
    parser.add_argument("--latency", type=float, default=0.2, help="mock seconds per completion (default 0.2)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent records (default 16)")
    parser.add_argument("--server", choices=("thread", "process"), default="thread",
                        help="run the mock server in a thread of this process (default) or a child process")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the reference run of the same pipeline hand-written in DSPy")
    parser.add_argument("--input", type=Path, default=XSTEST, help="CSV with a `prompt` column (default: XSTest)")
    args = parser.parse_args(argv)
    if args.records < 1 or args.workers < 1 or args.latency <= 0:
        parser.error("--records and --workers must be >= 1 and --latency > 0")

    tmp = Path(tempfile.mkdtemp(prefix="aidsafe-throughput-bench-"))
    rows = load_prompts(args.records, args.input)
    inputs, recipe = tmp / "inputs.jsonl", tmp / "aidsafe-mock.yaml"
    write_inputs(inputs, rows)

    server_cm = (MockOpenAIServer(latency=args.latency) if args.server == "thread"
                 else ServerProcess(args.latency))
    finished: list[float] = []
    with server_cm as server:
        recipe_data = write_recipe(recipe, server.url, args.workers)
        print(f"throughput bench: {args.records} records, mock latency {args.latency}s, {args.workers} workers, "
              f"server in a {args.server}, {server.url}", flush=True)
        print(machine_line(), flush=True)
        options = RunOptions(cache_dir=tmp / "cache", use_cache=False, workers=args.workers, progress=False)
        before = server.calls
        cpu0 = time.process_time()
        started = time.perf_counter()
        summary = run(recipe, inputs, tmp / "out.jsonl", options,
                      on_record=lambda record: finished.append(time.perf_counter()))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        calls = server.calls - before

        hand = None
        if not args.no_compare:
            before = server.calls
            started = time.perf_counter()
            hand_statuses = _common.run_handwritten(recipe_data, server.url, rows, tmp / "hand.jsonl", args.workers)
            hand = (time.perf_counter() - started, server.calls - before, hand_statuses)

    n = summary.total
    calls_per_record = calls / n
    ideal = args.workers / (args.latency * calls_per_record)
    achieved = n / wall
    # Steady state: from the first wave's completions to the start of the last wave.
    w = args.workers
    steady = None
    if n >= 3 * w:
        t0, t1 = finished[w - 1], finished[n - w - 1]
        steady = (n - 2 * w) / (t1 - t0) if t1 > t0 else None
    usage = summary.usage.total()
    per_call = usage.seconds / max(usage.calls, 1)
    slot = w * wall / n  # seconds a worker spends per record, all workers busy
    in_calls = usage.seconds / n

    print()
    print(f"{'figure':<46} {'aidsafe.run':>12}" + (f" {'hand-written DSPy':>18}" if hand else ""))
    print(f"{'records':<46} {n:>12}" + (f" {sum(hand[2].values()):>18}" if hand else ""))
    print(f"{'statuses':<46} {', '.join(f'{c} {s}' for s, c in sorted(summary.statuses.items())):>12}"
          + (f" {', '.join(f'{c} {s}' for s, c in sorted(hand[2].items())):>18}" if hand else ""))
    print(f"{'LM calls seen by the server':<46} {calls:>12}" + (f" {hand[1]:>18}" if hand else ""))
    print(f"{'calls per record (measured)':<46} {calls_per_record:>12.2f}"
          + (f" {hand[1] / n:>18.2f}" if hand else ""))
    print(f"{'wall time, whole run (s)':<46} {wall:>12.3f}" + (f" {hand[0]:>18.3f}" if hand else ""))
    print(f"{'ideal records/s = workers/(latency*calls)':<46} {ideal:>12.2f}" + (f" {ideal:>18.2f}" if hand else ""))
    print(f"{'achieved records/s, whole run':<46} {achieved:>12.2f}" + (f" {n / hand[0]:>18.2f}" if hand else ""))
    print(f"{'  as % of ideal':<46} {100 * achieved / ideal:>11.1f}%"
          + (f" {100 * n / hand[0] / ideal:>17.1f}%" if hand else ""))
    if steady:
        print(f"{'achieved records/s, steady state':<46} {steady:>12.2f}  ({100 * steady / ideal:.1f}% of ideal)")
    print(f"{'mean seconds per LM call, as the engine saw':<46} {per_call:>12.3f}  (latency {args.latency}s)")
    print(f"{'per record: worker time (workers*wall/records)':<46} {slot:>12.3f}  "
          f"= {in_calls:.3f}s in LM calls + {slot - in_calls:.3f}s outside them")
    print(f"{'CPU seconds of this process (ms per LM call)':<46} {cpu:>12.2f}  ({1000 * cpu / max(calls, 1):.1f} ms)")
    print()
    print("targets:")
    print(f"  [{verdict(achieved >= TARGET * ideal):>6}] records/s >= {TARGET:.0%} of ideal: "
          f"{achieved:.2f} vs {ideal:.2f} ({100 * achieved / ideal:.1f}%)")
    if hand:
        print(f"  (reference: the same pipeline hand-written in DSPy reached {100 * n / hand[0] / ideal:.1f}% "
              f"of ideal on this machine)")
    print(f"\nat the end, {machine_line()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
