"""YAML loading that remembers where every value came from.

Only ``yaml.SafeLoader`` is used: recipes and policy files are data and never
construct Python objects. Alongside the data we keep a map from JSON path
(a tuple of keys and indexes) to ``(file, line)`` so every error can name the
line it is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aidsafe._util.errors import RecipeError

Where = tuple[str, int]  # (file, 1-based line)
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


def _walk(node: yaml.Node, path: PathKey, file: str, lines: dict) -> None:
    lines[path] = (file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = (file, key_node.start_mark.line + 1)
            _walk(value_node, path + (key,), file, lines)
            # The key's own line is the better pointer for a mapping value.
            lines[path + (key,)] = (file, key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), file, lines)


def load_yaml(text: str, file: str = "<string>") -> Located:
    """Parse YAML text safely, keeping line numbers. Syntax errors become a
    :class:`RecipeError` naming the file and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([f"{file}:{line}: YAML syntax error: {problem}; fix the indentation or quoting "
                           "on that line (quote strings that contain ': ' or start with a special character)"],
                          source=file) from None
    lines: dict[PathKey, Where] = {}
    if node is not None:
        _walk(node, (), file, lines)
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
