"""Helpers every benchmark script shares."""

from __future__ import annotations

import csv
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
XSTEST = ROOT / "data" / "xstest" / "xstest_prompts.csv"


def machine_line() -> str:
    """CPU count and load average: other work on a small machine skews every
    figure, so the output says how busy the machine was."""
    try:
        load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return f"machine: {os.cpu_count()} CPU(s), load average (1/5/15 min) {load}"

def load_prompts(n: int, source: Path | None) -> list[dict]:
    """``n`` input rows: XSTest prompts first, then numbered variants of them
    (every prompt stays distinct)."""
    base: list[dict] = []
    if source is not None and source.is_file():
        with open(source, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("prompt"):
                    base.append({"id": f"xstest-{row.get('id') or len(base) + 1}", "prompt": row["prompt"]})
    if not base:
        base = [{"id": f"gen-{i}", "prompt": f"How do I safely dispose of old batteries, case {i}?"} for i in range(1, 51)]
    rows = []
    for i in range(n):
        row = base[i % len(base)]
        cycle = i // len(base)
        rows.append(dict(row) if cycle == 0 else
                    {"id": f"{row['id']}-v{cycle}", "prompt": f"{row['prompt']} (variant {cycle})"})
    return rows
