"""YAML bounds benchmark (issue 29, item 14): how long the loader takes to
refuse the audit's hostile recipe files: a "billion laughs" alias bomb (9
levels of 9 aliases, 340 bytes, 9**9 values if expanded), 200,000 keys (over
the byte bound) and 110,000 short keys (under it: the node bound fires).
The tests assert the *work* (nothing constructed, the walk stops at
MAX_NODES); this script times it, in CPU seconds of this process, against
the target of 5 s per file (under 1 s on an idle core).

Usage::

    python performance/yaml_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import islice, product
from pathlib import Path
from string import ascii_lowercase

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line  # noqa: E402

from aidsafe._util.errors import RecipeError  # noqa: E402
from aidsafe.config._recipe import load_recipe  # noqa: E402

TARGET = 5.0


def bomb(levels: int = 9) -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        name, prev = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="loads per file; the slowest counts (default 3)")
    args = parser.parse_args(argv)
    cases = {"bomb.yaml": bomb(), "keys.yaml": "".join(f"k{i}: {i}\n" for i in range(200_000)),
             "short-keys.yaml": "".join(f"{''.join(k)}: 0\n"
                                        for k in islice(product(ascii_lowercase, repeat=4), 110_000))}
    print(f"yaml bench: {len(cases)} hostile files, {args.repeat} load(s) each, target {TARGET:g} CPU s per file")
    print(machine_line(), flush=True)
    met = True
    with tempfile.TemporaryDirectory() as folder:
        for name, text in cases.items():
            path = Path(folder) / name
            path.write_text(text)
            worst = 0.0
            for _ in range(args.repeat):
                started = time.process_time()
                try:
                    load_recipe(path)
                    print(f"{name}: loaded (expected a RecipeError)")
                    met = False
                except RecipeError:
                    pass
                worst = max(worst, time.process_time() - started)
            ok = worst < TARGET
            met &= ok
            print(f"{name:<16} {len(text.encode()):>9,} bytes  slowest {worst:6.3f} CPU s  "
                  f"{'MET' if ok else 'MISSED'} (< {TARGET:g} s)")
    print(f"overall: {'MET' if met else 'MISSED'}; at the end, {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
