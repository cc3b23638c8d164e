"""Start-up benchmark: ``aidsafe --help`` and ``aidsafe validate`` against
``python -c "import dspy"`` on the same machine.

Target (issue 11): both commands start in at most a third of DSPy's import
time, because neither imports DSPy. Each command runs ``--runs`` times in a
fresh interpreter; the median wall time is reported.

    python performance/startup_bench.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine_line  # noqa: E402

TARGET_RATIO = 1 / 3


def median_seconds(argv: list[str], runs: int) -> float:
    """Median wall time of ``argv`` over ``runs`` fresh processes (one warm-up run first)."""
    subprocess.run(argv, cwd=ROOT, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = sys.executable
    print(machine_line())
    dspy_s = median_seconds([py, "-c", "import dspy"], args.runs)
    help_s = median_seconds([py, "-m", "aidsafe", "--help"], args.runs)
    validate_s = median_seconds([py, "-m", "aidsafe", "validate", "recipes/aidsafe.yaml"], args.runs)
    bare_s = median_seconds([py, "-c", "pass"], args.runs)
    print(f"{'command':<44} {'median s':>9} {'ratio to import dspy':>21}")
    print(f"{'python -c pass (interpreter start)':<44} {bare_s:>9.3f} {bare_s / dspy_s:>21.2f}")
    label = 'python -c "import dspy"'
    print(f"{label:<44} {dspy_s:>9.3f} {1:>21.2f}")
    for label, seconds in (("aidsafe --help", help_s), ("aidsafe validate recipes/aidsafe.yaml", validate_s)):
        ratio = seconds / dspy_s
        verdict = "MET" if ratio <= TARGET_RATIO else "MISSED"
        print(f"{label:<44} {seconds:>9.3f} {ratio:>21.2f}  target <= {TARGET_RATIO:.2f}: {verdict}")
    print(machine_line())
    return 0  # a benchmark measures: a missed target is printed, never an exit status


if __name__ == "__main__":
    sys.exit(main())
