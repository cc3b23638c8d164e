"""``OUT_DIR/compare.json``: what ``aidsafe compare`` ran, in its order.

``aidsafe view OUT_DIR`` reads it so the variants appear as the command
gave them, with the first (the baseline every difference is measured
against) first, not in alphabetical order. Small and dependency-free: the
viewer imports it without the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

from aidsafe._util.atomic import atomic_write

COMPARE_MANIFEST = "compare.json"


def write_compare_manifest(out_dir: str | Path, variants: list[dict]) -> Path:
    """Write the manifest: ``variants`` in order, each ``{"label", "recipe",
    "recipe_hash", "output"}``; the first is the reference."""
    path = Path(out_dir) / COMPARE_MANIFEST
    data = {"variants": [v["label"] for v in variants], "reference": variants[0]["label"] if variants else None,
            "runs": variants}
    with atomic_write(path) as handle:
        handle.write(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    return path


def compare_order(folder: str | Path) -> list[str]:
    """The variant labels of a compare folder in ``aidsafe compare``'s order,
    or ``[]`` without a (readable) manifest."""
    try:
        data = json.loads((Path(folder) / COMPARE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    variants = data.get("variants") if isinstance(data, dict) else None
    return [str(v) for v in variants] if isinstance(variants, list) else []


__all__ = ["COMPARE_MANIFEST", "compare_order", "write_compare_manifest"]
