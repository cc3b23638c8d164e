"""Start-up benchmark: ``aidsafe --help`` and ``aidsafe validate`` against
``python -c "import dspy"`` on the same machine.

Target (issues 11 and 27): both commands start in at most a quarter of
DSPy's import time, because neither imports DSPy, and the command group
imports only the command that runs. Each command runs ``--runs`` times in a
fresh interpreter, the commands interleaved (one run of each per round, the
order rotating every round) so that a change in the machine's load hits all
of them alike; the median wall time is reported, with the 1-minute load
average over each command's runs. The children run without
``PYTHONDONTWRITEBYTECODE``, so the warm-up run leaves ``.pyc`` files as an
installed package has them (with it set, every start would compile the
engine's modules from source while DSPy's come precompiled).

    python performance/startup_bench.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine_line, verdict  # noqa: E402

TARGET_RATIO = 0.25
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed_run(argv: list[str]) -> float:
    """Wall seconds of one run of ``argv`` in a fresh process."""
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, check=True)
    return time.perf_counter() - started


def interleaved(commands: dict[str, list[str]], runs: int) -> dict[str, tuple[float, list[float]]]:
    """Per label: the median wall time over ``runs`` rounds and the load
    averages seen. One warm-up run of each first; then every round runs
    each command once, starting one later in the list than the round before."""
    for argv in commands.values():
        timed_run(argv)
    labels = list(commands)
    times: dict[str, list[float]] = {label: [] for label in labels}
    loads: dict[str, list[float]] = {label: [] for label in labels}
    for round_no in range(runs):
        shift = round_no % len(labels)
        for label in labels[shift:] + labels[:shift]:
            loads[label].append(os.getloadavg()[0])
            times[label].append(timed_run(commands[label]))
    return {label: (statistics.median(times[label]), loads[label]) for label in labels}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = sys.executable
    dspy_label, help_label = 'python -c "import dspy"', "aidsafe --help"
    validate_label, bare_label = "aidsafe validate recipes/aidsafe.yaml", "python -c pass (interpreter start)"
    commands = {
        dspy_label: [py, "-c", "import dspy"],
        help_label: [py, "-m", "aidsafe", "--help"],
        validate_label: [py, "-m", "aidsafe", "validate", "recipes/aidsafe.yaml"],
        bare_label: [py, "-c", "pass"],
    }
    print(machine_line())
    print(f"{args.runs} interleaved rounds (one run of each command per round, rotating order)")
    results = interleaved(commands, args.runs)
    dspy_s = results[dspy_label][0]
    print(f"{'command':<44} {'median s':>9} {'ratio to import dspy':>21} {'load (1 min)':>13}")
    for label in (bare_label, dspy_label, help_label, validate_label):
        seconds, loads = results[label]
        ratio = seconds / dspy_s
        line = f"{label:<44} {seconds:>9.3f} {ratio:>21.2f} {min(loads):>6.2f}-{max(loads):<6.2f}"
        if label in (help_label, validate_label):
            line += f"  target <= {TARGET_RATIO:.2f}: {verdict(ratio <= TARGET_RATIO)}"
        print(line)
    print(f"at the end, {machine_line()}")
    return 0  # a benchmark measures: a missed target is printed, never an exit status


if __name__ == "__main__":
    sys.exit(main())
