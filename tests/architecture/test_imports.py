"""The package's shape: no import cycles (module-level and deferred imports
alike), a light ``aidsafe``/``config`` import, no side effects on import."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "engine"


def _module_name(path: Path) -> str:
    parts = ("aidsafe",) + path.relative_to(PACKAGE_DIR).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """``aidsafe.x.y``: the module itself, or the package it names (for
    ``from pkg import obj``, the module that really defines ``obj`` when the
    package exports it lazily)."""
    return name if name in modules else None


def import_graph() -> dict[str, set[str]]:
    """Every import of an ``aidsafe`` module by another, wherever it stands
    (top level, inside functions, under TYPE_CHECKING excluded)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        type_checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                         and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in type_checking:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = []
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules:
                        targets.append(sub)
                        continue
                    target = node.module
                    if target in modules and modules[target].name == "__init__.py":
                        lazy = getattr(importlib.import_module(target), "_LAZY_EXPORTS", {})
                        if alias.name in lazy:
                            target = importlib.util.resolve_name(lazy[alias.name], node.module)
                    targets.append(target)
            else:
                continue
            for target in targets:
                if target.startswith("aidsafe") and target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_relative_imports_are_not_used():
    """Absolute imports only: the graph above must see every edge."""
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}:{node.lineno} relative import"


_PROBE = """
import json, os, sys
before = dict(os.environ)
import aidsafe
after_import = dict(os.environ)
names = aidsafe.__all__
heavy = sorted(m for m in ("dspy", "litellm", "jsonschema", "diskcache") if m in sys.modules)
print(json.dumps({"env_changed": before != after_import, "heavy": heavy, "all": names}))
"""


def test_importing_the_package_changes_nothing_and_loads_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    probe = json.loads(out)
    assert probe["env_changed"] is False
    assert probe["heavy"] == []
    assert "run" in probe["all"] and "load_recipe" in probe["all"]


_DSPY_PROBE = """
import json, os, sys
import dspy
before_env = dict(os.environ)
before_cache = dspy.cache
before_settings = dict(dspy.settings.config)
import aidsafe
from aidsafe import run, RunOptions, compile_recipe, load_recipe, Cache  # the public names load their modules
print(json.dumps({"env": before_env == dict(os.environ), "cache": dspy.cache is before_cache,
                  "settings": before_settings == dict(dspy.settings.config)}))
"""


def test_public_names_leave_dspy_settings_and_environment_untouched():
    out = subprocess.run([sys.executable, "-c", _DSPY_PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"env": True, "cache": True, "settings": True}


def test_validate_and_help_do_not_import_dspy():
    code = ("import sys; from click.testing import CliRunner; from aidsafe.cli import main; "
            "r = CliRunner().invoke(main, ['validate', 'recipes/aidsafe.yaml']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; print('dspy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE_DIR.parent).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("package", ["aidsafe", "aidsafe.config", "aidsafe.models", "aidsafe.pipeline",
                                     "aidsafe.runtime", "aidsafe.evaluation", "aidsafe.tools", "aidsafe.store",
                                     "aidsafe.cli"])
def test_every_public_name_resolves_and_has_a_docstring(package):
    module = importlib.import_module(package)
    assert module.__doc__, f"{package} has no docstring"
    for name in module.__all__:
        value = getattr(module, name)
        if callable(value) and not name.isupper():
            assert value.__doc__, f"{package}.{name} has no docstring"


def test_python_dash_m_aidsafe_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "aidsafe", "--version"], capture_output=True, text=True, check=True)
    assert "aidsafe" in out.stdout


def test_setup_cfg_lists_every_package():
    listed = set()
    lines = (PACKAGE_DIR.parent / "setup.cfg").read_text().splitlines()
    start = lines.index("packages =")
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        listed.add(line.strip())
    on_disk = {_module_name(p) for p in PACKAGE_DIR.rglob("__init__.py")}
    assert listed == on_disk
