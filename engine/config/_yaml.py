"""YAML loading that remembers where every value came from.

Only the safe loader is used (libyaml's ``CSafeLoader`` where PyYAML has it,
else ``SafeLoader``): recipes and policy files are data and never construct
Python objects. Alongside the data we keep a map from JSON path (a tuple of
keys and indexes) to ``(file, line)`` so every error can name the line it is
about.

Loading is bounded: a file over ``MAX_BYTES``, nesting deeper than
``MAX_DEPTH`` or more than ``MAX_NODES`` values once aliases are expanded (a
"billion laughs" anchor bomb) is an error naming the file and line, not a hang.
Keys must be text and unique in their mapping: a duplicate key (which YAML
would silently resolve to the last one) is an error naming both lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aidsafe._util.errors import RecipeError

Where = tuple[str, int]  # (file, 1-based line)

MAX_BYTES = 1_000_000
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


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _key_problem(key_node: yaml.Node, file: str, path: PathKey) -> str | None:
    """Why a mapping key cannot name anything (recipe keys are text), or None."""
    line = key_node.start_mark.line + 1
    where = f"{file}:{line} {format_path(path)}"
    if not isinstance(key_node, yaml.ScalarNode):
        return f"{where}: a key must be text, found a {'mapping' if isinstance(key_node, yaml.MappingNode) else 'list'}"
    if key_node.tag not in (_STR_TAG, _MERGE_TAG):
        kind = key_node.tag.rsplit(":", 1)[-1]
        return (f"{where}: the key {key_node.value!r} is read as {kind}, not text; "
                f"quote it: '{key_node.value}':")
    return None


def _walk(root: yaml.Node, file: str, lines: dict) -> list[str]:
    """Record each value's line, iteratively and within the bounds. Returns
    the problems of the document's keys (duplicates, keys that are not text)."""
    # (node, path, line of its key, merged: values from a `<<:` merge key, which explicit keys override)
    stack: list[tuple[yaml.Node, PathKey, int | None, bool]] = [(root, (), None, False)]
    visited = 0
    problems: list[tuple[int, str]] = []  # (line, text)
    while stack:
        node, path, key_line, merged = stack.pop()
        visited += 1
        line = node.start_mark.line + 1
        if visited > MAX_NODES:
            raise RecipeError([f"{file}:{line}: more than {MAX_NODES:,} values (each use of an alias counts its "
                               "values again); a recipe this large is a mistake or an alias bomb: split the file "
                               "or remove the aliases"], source=file)
        if len(path) > MAX_DEPTH:
            raise RecipeError([f"{file}:{line}: nested deeper than {MAX_DEPTH} levels; flatten the structure"],
                              source=file)
        # The key's own line is the better pointer for a mapping value.
        if merged:
            lines.setdefault(path, (file, key_line or line))
        else:
            lines[path] = (file, key_line or line)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            children = []
            for key_node, value_node in node.value:
                key_line_ = key_node.start_mark.line + 1
                problem = _key_problem(key_node, file, path)
                if problem:
                    problems.append((key_line_, problem))
                    continue
                if key_node.tag == _MERGE_TAG:
                    # `<<: *base` (or a list of them) merges mappings into this one.
                    sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                    children += [(source, path, key_line_, True) for source in sources]
                    continue
                if key_node.value in seen:
                    problems.append((key_line_, f"{file}:{key_line_} {format_path(path + (key_node.value,))}: "
                                                f"duplicate key {key_node.value!r} (first at line "
                                                f"{seen[key_node.value]}); YAML keeps only the last one: remove "
                                                "or merge one of them"))
                    continue
                seen[key_node.value] = key_line_
                children.append((value_node, path + (key_node.value,), key_line_, merged))
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            for index in range(len(node.value) - 1, -1, -1):
                stack.append((node.value[index], path + (index,), None, merged))
    return [text for _, text in sorted(problems, key=lambda item: item[0])]


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
                # bounds first: construction would expand an alias bomb too
                problems = _walk(node, file, lines)
                if problems:
                    raise RecipeError(problems, source=file)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise RecipeError([f"{file}:{line}: control character U+{code:04X} is not allowed in YAML; remove it "
                           "or write it as an escape inside a double-quoted string"], source=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join((getattr(exc, "problem", None) or str(exc)).split())
        if "nesting depth" in problem:  # libyaml's own depth bound
            raise RecipeError([f"{file}:{line}: nested too deeply to parse; flatten the structure"],
                              source=file) from None
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
        size = Path(path).stat().st_size
        if size > MAX_BYTES:  # before reading it: the file may be huge
            raise RecipeError([f"{name}:1: {size:,} bytes, over the {MAX_BYTES:,} a recipe or policy file may "
                               "have; split it or move data out of it"], source=name)
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise RecipeError([f"{name}:1: file not found"], source=name) from None
    except IsADirectoryError:
        raise RecipeError([f"{name}:1: is a folder, not a YAML file"], source=name) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RecipeError([f"{name}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}: "
                           f"{exc.reason}); save the file as UTF-8"], source=name) from None
    return load_yaml(text, name)


def format_path(path: PathKey) -> str:
    """``('stages', 2, 'agents')`` -> ``stages[2].agents``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # a key with a line break or a control character would break the one-line-per-problem report
            text = str(part) if str(part).isprintable() else json.dumps(str(part))
            out += ("." if out else "") + text
    return out or "(top level)"
