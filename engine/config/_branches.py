"""Branches: a group of stages behind one condition, written once.

    stages:
      - {id: screen, kind: predict, agent: screener}
      - branch: deliberate_borderline
        when: "screen == 'borderline'"
        stages:
          - {id: initial, kind: generate, agent: generator}
          - {id: deliberation, kind: deliberate, agents: [a, b]}

A recipe file's branches are flattened as it loads, before ``extends`` and
the schema: every stage of a branch becomes an ordinary stage carrying
``branch: {name, when}``, so patches by stage id, the schema, the checks, the
cache and every tool see one list of stages. The condition is decided once,
when the record reaches the branch's first stage (a field the branch itself
writes cannot switch it off half-way).
"""

from __future__ import annotations

import re

from aidsafe._util.errors import RecipeError
from aidsafe.config._yaml import Located, format_path

BRANCH_KEYS = ("branch", "when", "stages", "desc")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def is_branch_item(item: object) -> bool:
    """Whether a ``stages:`` item is a branch (``{branch: NAME, when, stages}``),
    not a stage (a flattened stage's ``branch`` is a mapping)."""
    return isinstance(item, dict) and (isinstance(item.get("branch"), str) or
                                       ("stages" in item and "kind" not in item))


def flatten_branches(located: Located) -> Located:
    """The document with each branch item of its ``stages:`` list replaced by
    its stages (each with ``branch: {name, when}``) and every line moved to
    the flattened place. A malformed branch is a :class:`RecipeError` at its
    line, with the fix."""
    data = located.data
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, list) or not any(is_branch_item(s) for s in stages):
        return located
    problems: list[str] = []
    flat: list = []
    moved: dict[tuple, tuple] = {}  # old path prefix -> new path prefix
    extra_lines: dict[tuple, tuple] = {}  # each branch stage's `branch` -> the branch's own lines

    def problem(path: tuple, message: str) -> None:
        file, line = located.where(path)
        problems.append(f"{file}:{line} {format_path(path)}: {message}")

    example = ("e.g. `{branch: borderline, when: \"screen == 'borderline'\", stages: [{id: initial, kind: generate, "
               "agent: generator}]}`")
    for i, item in enumerate(stages):
        if not is_branch_item(item):
            moved[("stages", i)] = ("stages", len(flat))
            flat.append(item)
            continue
        base = ("stages", i)
        name, when, inner = item.get("branch"), item.get("when"), item.get("stages")
        for key in item:
            if key not in BRANCH_KEYS:
                hint = " (a stage key: put it on the stages inside the branch)" if key in ("id", "kind", "agent") else ""
                problem(base + (key,), f"a branch takes {', '.join(BRANCH_KEYS)}; {key!r} is not one of them{hint}")
        if not isinstance(name, str) or not _NAME.match(name):
            problem(base + ("branch",), f"a branch needs a name (letters, digits, _ and -), found {name!r}; {example}")
        if not isinstance(when, str) or not when.strip():
            problem(base + ("when",), "a branch needs a `when:` condition, the one its stages share; "
                                      "without one, list the stages directly")
        if not isinstance(inner, list) or not inner:
            problem(base + ("stages",), f"a branch needs a non-empty list of `stages:`; {example}")
            continue
        for j, stage in enumerate(inner):
            where = base + ("stages", j)
            if is_branch_item(stage):
                problem(where, "branches do not nest; give the inner stages their own `when:` (it is and-ed "
                               "with the branch's), or make the inner branch a separate one")
                continue
            if isinstance(stage, dict) and "branch" in stage:
                problem(where + ("branch",), "a stage inside a branch takes no `branch:`; remove it")
                continue
            moved[where] = ("stages", len(flat))
            flat.append({**stage, "branch": {"name": name, "when": when}} if isinstance(stage, dict) else stage)
            new = ("stages", len(flat) - 1, "branch")
            for old, suffix in ((base + ("branch",), ("name",)), (base + ("when",), ("when",)), (base, ())):
                if old in located.lines:
                    extra_lines[new + suffix] = located.lines[old]
    if problems:
        raise RecipeError(problems, source=located.file)
    lines = {}
    for path, where in located.lines.items():
        target = _moved_path(path, moved)
        if target is not None:
            lines[target] = where
    lines.update(extra_lines)
    return Located(data={**data, "stages": flat}, lines=lines, file=located.file)


def _moved_path(path: tuple, moved: dict) -> tuple | None:
    """Where ``path`` is once the branches are flattened: unchanged outside
    ``stages``; under a moved stage, under its new index; None for a branch's
    own keys (they are given to its stages)."""
    if path[:1] != ("stages",) or len(path) < 2:
        return path
    for size in (4, 2):
        if path[:size] in moved:
            return moved[path[:size]] + path[size:]
    return None
