"""Helpers every benchmark script shares."""

from __future__ import annotations

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
