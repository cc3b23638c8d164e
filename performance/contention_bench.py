"""Contention benchmark (issue 28): the embedded model's generation speed on a
busy machine, llama.cpp's old setting against ``threads: auto``.

For 0, 1 and 2 competing busy processes (started by this script, each a
CPU-bound loop that ends on its own after ``--busy-limit`` seconds and is
terminated in a ``finally``), it loads the model twice, side by side in the
same condition:

* **old**: threads = the cores this process may use, ``poll`` 50 (llama.cpp's
  defaults, and what the shipped recipes' ``threads: 2`` gave on 2 cores);
* **new**: the default, ``threads: auto`` with ``poll`` 0, chosen when the
  model loads (after the busy processes started, as a run would see them);

then runs a fixed greedy generation (a short prompt, ``--tokens`` tokens with
end-of-sequence ignored, so both sides generate the same count) alternately,
``--reps`` times each, and keeps the median of llama.cpp's own generation
tokens/s. Every figure is printed beside the load average and the tasks
running at that moment.

Targets (printed MET / MISSED; the script exits 0 either way):

* 2 busy processes: new >= 3x old;
* 1 busy process: new keeps >= 0.6x of its own quiet tokens/s;
* quiet: new >= 0.95x old.

Usage::

    python performance/contention_bench.py [--model local:default] [--tokens 128] [--reps 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, target_line  # noqa: E402
from dspy.lm15 import Config, Message, Request  # noqa: E402

from aidsafe._util.paths import weights_dir  # noqa: E402
from aidsafe.models.local._engine import LlamaCppEngine  # noqa: E402
from aidsafe.models.local._threads import _running_now, usable_cores  # noqa: E402
from aidsafe.models.local._weights import resolve_local  # noqa: E402

PROMPT = "Write a short paragraph about the history of the bicycle."

# A busy process: spins until its deadline (argv[1] seconds), so a crashed
# bench leaves nothing running for long.
BUSY = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


def load_text() -> str:
    """The 1-minute load average and the tasks running now (others than this one)."""
    try:
        load = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load = "n/a"
    running = _running_now()
    return f"load {load}, running {running:.1f}" if running is not None else f"load {load}"


@dataclass
class Side:
    name: str
    engine: LlamaCppEngine
    tok_s: list[float] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.tok_s) if self.tok_s else 0.0


def generate(engine: LlamaCppEngine, tokens: int) -> float:
    """One fixed greedy generation; llama.cpp's generation tokens/s."""
    request = Request(model="local/bench", messages=(Message.user(PROMPT),),
                      config=Config(max_tokens=tokens, temperature=0.0, extensions={"ignore_eos": True}))
    response = engine.complete(request)
    timings = (response.provider_data or {}).get("timings") or {}
    speed = timings.get("predicted_per_second")
    if speed is None:  # no timings: tokens over the wall time of the call
        raise RuntimeError("llama.cpp returned no timings")
    return float(speed)


def start_busy(n: int, limit: float) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BUSY, str(limit)]) for _ in range(n)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def condition(model, busy: int, args) -> dict[str, Side]:
    """Both settings under ``busy`` competing processes, alternately."""
    procs = start_busy(busy, args.busy_limit)
    sides: dict[str, Side] = {}
    try:
        time.sleep(args.settle)  # the busy loops are running before anything is chosen or timed
        cores = usable_cores()
        # new first: auto looks at the running tasks when it loads, and the
        # old side's spinning threads are not part of the machine it is for
        sides["new"] = Side("new", LlamaCppEngine(model, n_ctx=1024, prompt_cache_mib=0))  # threads: auto
        sides["old"] = Side("old", LlamaCppEngine(model, n_threads=cores, poll=50, n_ctx=1024, prompt_cache_mib=0))
        for side in sides.values():
            side.engine._ensure_loaded()
            generate(side.engine, 4)  # first call: allocations and graph, not timed
        for rep in range(args.reps):
            order = ("old", "new") if rep % 2 == 0 else ("new", "old")
            for name in order:
                side = sides[name]
                side.tok_s.append(generate(side.engine, args.tokens))
                side.loads.append(load_text())
                print(f"    {busy} busy, {name:3}: {side.tok_s[-1]:6.1f} tok/s  ({side.loads[-1]})", flush=True)
    finally:
        stop_busy(procs)
        for side in sides.values():
            side.engine.close()
    return sides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local:default", help="local:default (0.5B, default), local:smoke or local:PATH.gguf")
    parser.add_argument("--tokens", type=int, default=128, help="greedy tokens per timed generation (default 128)")
    parser.add_argument("--reps", type=int, default=3, help="timed generations per setting and condition (default 3)")
    parser.add_argument("--busy", default="0,1,2", help="competing busy processes per condition (default 0,1,2)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds the busy processes run before a condition starts")
    parser.add_argument("--busy-limit", type=float, default=600.0, help="a busy process ends by itself after this many seconds")
    parser.add_argument("--quick", action="store_true", help="a short check that the script works: 32 tokens, 1 rep")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.reps, args.settle = 32, 1, 1.0
    if args.tokens < 1 or args.reps < 1:
        parser.error("--tokens and --reps must be >= 1")
    if not args.model.startswith("local:"):
        parser.error("--model must be a local:... model")
    counts = [int(x) for x in args.busy.split(",") if x.strip()]

    print(f"contention bench: {args.model}, {args.tokens} greedy tokens x {args.reps} rep(s), "
          f"busy processes {counts}, {usable_cores()} usable core(s)", flush=True)
    print(machine_line(), f"({load_text()})", flush=True)
    model = resolve_local(args.model.split(":", 1)[1], weights_dir())
    results: dict[int, dict[str, Side]] = {}
    for busy in counts:
        print(f"\n  {busy} busy process(es):", flush=True)
        results[busy] = condition(model, busy, args)
        new = results[busy]["new"].engine.threads
        print(f"    new side chose {new.describe() if new else '?'}", flush=True)

    print(f"\n  {'busy':>4} {'old tok/s':>10} {'new tok/s':>10} {'new/old':>8}  new threads  load while timing")
    for busy, sides in results.items():
        old, new = sides["old"], sides["new"]
        ratio = new.median / old.median if old.median else float("inf")
        chosen = new.engine.threads
        print(f"  {busy:>4} {old.median:10.1f} {new.median:10.1f} {ratio:8.2f}  "
              f"{(chosen.threads if chosen else '?')!s:>11}  {new.loads[-1] if new.loads else ''}")

    print()
    if 2 in results:
        old, new = results[2]["old"].median, results[2]["new"].median
        print(target_line(old > 0 and new >= 3 * old, f"2 busy: new >= 3x old: {new:.1f} / {old:.1f} = "
                      f"{new / old if old else float('inf'):.2f}x"))
    if 1 in results and 0 in results:
        quiet, busy1 = results[0]["new"].median, results[1]["new"].median
        print(target_line(quiet > 0 and busy1 >= 0.6 * quiet, f"1 busy: new keeps >= 0.6x of its quiet speed: "
                      f"{busy1:.1f} / {quiet:.1f} = {busy1 / quiet if quiet else 0:.2f}x"))
    if 0 in results:
        old, new = results[0]["old"].median, results[0]["new"].median
        print(target_line(old > 0 and new >= 0.95 * old, f"quiet: new >= 0.95x old: {new:.1f} / {old:.1f} = "
                      f"{new / old if old else float('inf'):.2f}x"))
    print(machine_line(), f"({load_text()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
