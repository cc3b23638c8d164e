"""Writes data/precedents/pool.jsonl: the default pool of labeled precedents
(``query``, ``decision``: answer | decline, ``source``) that a screening agent
takes its nearest demos from. See SOURCE.md for what is in it and why.

Deterministic (fixed seed, files read in order); standard library only.
Run from anywhere: python data/precedents/make_pool.py [--check]
(``--check`` exits 1 when the shipped pool differs from what the script writes).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from collections import OrderedDict
from pathlib import Path

SEED = 20250521  # AIDSAFE's arXiv date; any fixed value would do
HERE = Path(__file__).resolve().parent
DATA = HERE.parent
ROOT = DATA.parent
POOL = HERE / "pool.jsonl"

STRONGREJECT_PER_CATEGORY = 10  # 6 categories: 60
ADVBENCH = 30
MMLU = 80


def key(text: str) -> str:
    """What counts as the same query across sets: case, spacing and closing
    punctuation ignored."""
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(" .?!")


def rows(path: Path) -> list[dict]:
    """The rows of a shipped CSV file."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def demo_queries() -> set[str]:
    """Every query shown in a demo of recipes/prompts/*/prompts.json."""
    out = set()
    for path in sorted((ROOT / "recipes" / "prompts").glob("*/prompts.json")):
        for agent in json.loads(path.read_text(encoding="utf-8"))["agents"].values():
            out.update(key(str(d["query"])) for d in agent.get("demos", []) if d.get("query"))
    return out


def stratified(items: list, stratum, take, rng: random.Random) -> list:
    """``take(name, members)`` items of each stratum, drawn with ``rng``; the
    result keeps file order."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, item in enumerate(items):
        groups.setdefault(stratum(item), []).append(i)
    picked = []
    for name, members in groups.items():
        picked += rng.sample(members, take(name, members))
    return [items[i] for i in sorted(picked)]


def xstest_half(rng: random.Random, exclude: set[str]) -> list[dict]:
    """Half of XSTest's shipped rows (demo queries left out first), by type:
    each of the 18 types (10 safe, 8 unsafe contrast) gives floor or ceil of
    half its rows, alternating so the total is half. The other half is the
    quality benchmark's."""
    xs = [r for r in rows(DATA / "xstest" / "xstest_prompts.csv") if key(r["prompt"]) not in exclude]
    odd = iter(range(10**6))
    return stratified(xs, lambda r: r["type"], lambda _, m: len(m) // 2 + (len(m) % 2 and next(odd) % 2), rng)


def mmlu_questions(rng: random.Random) -> list[tuple[str, str]]:
    """(source, question) for MMLU test items whose question stands alone:
    one line ending in '?' that does not point at the options. Spread over the
    11 subjects: a seeded shuffle per subject, then round robin."""
    queues = []
    for path in sorted((DATA / "mmlu" / "test").glob("*_test.csv")):
        subject = path.name[: -len("_test.csv")]
        ok = [(f"mmlu:{subject}-{i}", r["question"].strip()) for i, r in enumerate(rows(path), 1)
              if r["question"].strip().endswith("?") and "\n" not in r["question"].strip()
              and not re.search(r"\b(following|below|above|statements?)\b", r["question"], re.I)
              and 15 <= len(r["question"].strip()) <= 240]
        rng.shuffle(ok)
        queues.append(ok)
    picked = []
    while len(picked) < MMLU and any(queues):
        for queue in queues:
            if queue and len(picked) < MMLU:
                picked.append(queue.pop(0))
    return picked


def build() -> list[dict]:
    """The pool's rows, in order: XSTest, StrongREJECT, HarmBench, AdvBench, MMLU."""
    rng = random.Random(SEED)
    exclude = demo_queries()
    pool: list[dict] = []
    seen = set(exclude)

    def add(query: str, decision: str, source: str) -> None:
        if key(query) not in seen:
            seen.add(key(query))
            pool.append({"query": query, "decision": decision, "source": source})

    for r in xstest_half(rng, exclude):
        add(r["prompt"], "answer" if r["label"] == "safe" else "decline", f"xstest:{r['id']}")
    sr = [(i, r) for i, r in enumerate(rows(DATA / "strongreject" / "strongreject_dataset.csv"), 1)
          if key(r["forbidden_prompt"]) not in exclude]
    for i, r in stratified(sr, lambda x: x[1]["category"], lambda *_: STRONGREJECT_PER_CATEGORY, rng):
        add(r["forbidden_prompt"], "decline", f"strongreject:{i}")
    # HarmBench's val split (the bench's safety suite reads the test split): its standard behaviours.
    for r in rows(DATA / "harmbench" / "harmbench_behaviors_text_val.csv"):
        if r["FunctionalCategory"] == "standard":
            add(r["Behavior"], "decline", f"harmbench:{r['BehaviorID']}")
    adv = [(i, r) for i, r in enumerate(rows(DATA / "advbench" / "harmful_behaviors.csv"), 1)
           if key(r["goal"]) not in seen]
    for i, r in sorted(rng.sample(adv, ADVBENCH), key=lambda x: x[0]):
        add(r["goal"], "decline", f"advbench:{i}")
    for source, question in mmlu_questions(rng):
        add(question, "answer", source)
    return pool


def render(pool: list[dict]) -> str:
    """The pool as JSONL text."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in pool)


def main() -> int:
    """Write the pool (or, with --check, compare it) and print its counts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the shipped pool, write nothing")
    args = parser.parse_args()
    text = render(build())
    if args.check:
        same = POOL.is_file() and POOL.read_text(encoding="utf-8") == text
        print(f"{POOL}: {'up to date' if same else 'differs from what make_pool.py writes'}")
        return 0 if same else 1
    POOL.write_text(text, encoding="utf-8")
    pool = [json.loads(line) for line in text.splitlines()]
    counts: dict[str, int] = {}
    for row in pool:
        name = f"{row['source'].split(':')[0]} {row['decision']}"
        counts[name] = counts.get(name, 0) + 1
    print(f"wrote {len(pool)} rows to {POOL}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
