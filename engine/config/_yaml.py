"""YAML loading that remembers where every value came from.

Only the safe loader is used (libyaml's ``CSafeLoader`` where PyYAML has it,
else ``SafeLoader``): recipes and policy files are data and never construct
Python objects. Alongside the data we keep a map from JSON path (a tuple of
keys and indexes) to ``(file, line)`` so every error can name the line it is
about.

Loading is bounded: a file over ``MAX_BYTES``, nesting deeper than
``MAX_DEPTH`` or more than ``MAX_NODES`` values once aliases are expanded (a
"billion laughs" anchor bomb) is an error naming the file and line, not a hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aidsafe._util.errors import RecipeError

Where = tuple[str, int]  # (file, 1-based line)

MAX_BYTES = 2_000_000
MAX_DEPTH = 64
MAX_NODES = 100_000
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PathKey = tuple  # JSON path as a tuple of str keys / int indexes


@dataclass
class Located:
    """A loaded YAML document and the source position of each of its values."""

    data: Any
    lines: dict[PathKey, Where] = field(default_factory=dict)
    file: str = "<string>"

    def where(self, path: PathKey) -> Where:
        """The position of ``path``, or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), (self.file, 1))


def _walk(root: yaml.Node, file: str, lines: dict) -> None:
    """Record each value's line, iteratively and within the bounds."""
    stack: list[tuple[yaml.Node, PathKey, int | None]] = [(root, (), None)]
    visited = 0
    while stack:
        node, path, key_line = stack.pop()
        visited += 1
        line = node.start_mark.line + 1
        if visited > MAX_NODES:
            raise RecipeError([f"{file}:{line}: more than {MAX_NODES:,} values once anchors and aliases are "
                               "expanded; a recipe this large is a mistake or an alias bomb: remove the aliases"],
                              source=file)
        if len(path) > MAX_DEPTH:
            raise RecipeError([f"{file}:{line}: nested deeper than {MAX_DEPTH} levels; flatten the structure"],
                              source=file)
        # The key's own line is the better pointer for a mapping value.
        lines[path] = (file, key_line or line)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in reversed(node.value):
                stack.append((value_node, path + (key_node.value,), key_node.start_mark.line + 1))
        elif isinstance(node, yaml.SequenceNode):
            for index in range(len(node.value) - 1, -1, -1):
                stack.append((node.value[index], path + (index,), None))


def load_yaml(text: str, file: str = "<string>") -> Located:
    """Parse YAML text safely, keeping line numbers. Syntax errors become a
    :class:`RecipeError` naming the file and line."""
    if len(text) > MAX_BYTES:
        raise RecipeError([f"{file}:1: {len(text):,} characters, over the {MAX_BYTES:,} a recipe or policy file "
                           "may have; split it or move data out of it"], source=file)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            lines: dict[PathKey, Where] = {}
            if node is not None:
                _walk(node, file, lines)  # bounds first: construction would expand an alias bomb too
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([f"{file}:{line}: YAML syntax error: {problem}; fix the indentation or quoting "
                           "on that line (quote strings that contain ': ' or start with a special character)"],
                          source=file) from None
    except RecursionError:
        raise RecipeError([f"{file}:1: nested too deeply to parse; flatten the structure"], source=file) from None
    return Located(data=data, lines=lines, file=file)


def load_yaml_file(path: Path, display: str | None = None) -> Located:
    """Read and parse a YAML file (see :func:`load_yaml`)."""
    name = display or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"{name}: file not found"], source=name) from None
    except UnicodeDecodeError as exc:
        raise RecipeError([f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"],
                          source=name) from None
    return load_yaml(text, name)


def format_path(path: PathKey) -> str:
    """``('stages', 2, 'agents')`` -> ``stages[2].agents``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"
