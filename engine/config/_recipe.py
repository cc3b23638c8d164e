"""Recipes: YAML -> dict (with ``extends`` resolved) -> JSON Schema -> checks
that need the registries -> typed specs.

This is the only load path. Every problem found is reported at once, each
with ``file:line json.path: what was expected, what was found, the fix``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from aidsafe._util import paths
from aidsafe._util.errors import RecipeError, UserError
from aidsafe._util.registry import suggest
from aidsafe.config._branches import flatten_branches, is_branch_item
from aidsafe.config._schema import raise_located, schema_problems
from aidsafe.config._specs import AgentSpec, FieldSpec, InputSpec, ModelSpec, Recipe, StageSpec
from aidsafe.config._yaml import Located, PathKey, format_path, load_yaml_file

# ---------------------------------------------------------------- extends

def _merge(parent: Any, child: Any) -> Any:
    """Deep-merge ``child`` over ``parent``: mappings merge, anything else is
    replaced, ``None`` in the child deletes the key."""
    if isinstance(parent, dict) and isinstance(child, dict):
        out = dict(parent)
        for key, value in child.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value)
            else:
                out[key] = value
        return out
    return child


def _patch_stages(parent_stages: list, patch: dict, child: Located, merged_lines: dict, problems: list) -> list:
    """Apply ``stages: {id: partial|null}`` from a child recipe to its parent's
    list. An id the parent lacks adds a stage (it must say its ``kind``): at
    the end, or right after the stage named by its ``after:`` key."""
    stages = [copy.deepcopy(s) for s in parent_stages]
    ids = [s.get("id") for s in stages if isinstance(s, dict)]
    for stage_id, partial in patch.items():
        where = child.where(("stages", stage_id))
        if partial is not None and not isinstance(partial, dict):
            problems.append(f"{where[0]}:{where[1]} {format_path(('stages', stage_id))}: expected a mapping of stage keys to override, "
                            f"found {type(partial).__name__}")
            continue
        if stage_id not in ids:
            if partial is None or "kind" not in partial:
                problems.append(f"{where[0]}:{where[1]} {format_path(('stages', stage_id))}: the parent recipe has no stage {stage_id!r}"
                                f"{suggest(stage_id, ids)}; patch one of {', '.join(map(str, ids))}, or add a new "
                                f"stage by giving its `kind:` (and `after: ID` to place it)")
                continue
            new = {"id": stage_id, **{k: v for k, v in partial.items() if k != "after"}}
            after = partial.get("after")
            if after is not None and after not in ids:
                problems.append(f"{where[0]}:{where[1]} {format_path(('stages', stage_id, 'after'))}: no stage {after!r}{suggest(str(after), ids)}")
                continue
            position = ids.index(after) + 1 if after is not None else len(stages)
            stages.insert(position, new)
            ids.insert(position, stage_id)
        elif partial is None:
            stages[ids.index(stage_id)] = None
            continue
        else:
            stages[ids.index(stage_id)] = _merge(stages[ids.index(stage_id)], partial)
    kept = [s for s in stages if s is not None]
    kept_ids = [s.get("id") for s in kept]
    # Point each patched stage's keys at the child's lines, by final position.
    for key_path, where in child.lines.items():
        if key_path[:1] == ("stages",) and len(key_path) >= 2 and key_path[1] in kept_ids:
            merged_lines[("stages", kept_ids.index(key_path[1])) + key_path[2:]] = where
    return kept


def _load_chain(path: Path, display: str, seen: list[str]) -> tuple[dict, dict, list[str]]:
    located = load_yaml_file(path, display)
    data = located.data
    if not isinstance(data, dict):
        raise RecipeError([f"{display}:1 (top level): expected a mapping of recipe keys (name, models, "
                           f"policies, agents, stages), found {type(data).__name__}"], source=display)
    chain = seen + [display]
    parent_ref = data.get("extends")
    if parent_ref is None and isinstance(data.get("stages"), dict):
        located = Located(_stage_mapping_as_list(data), _stage_lines_by_index(data, located), located.file)
    # each file's branches become flat stages with `branch: {name, when}` before patching and the schema
    located = flatten_branches(located)
    data = located.data
    if parent_ref is None:
        return data, dict(located.lines), chain
    if not isinstance(parent_ref, str):
        file, line = located.where(("extends",))
        raise RecipeError([f"{file}:{line} extends: expected a path string, found {type(parent_ref).__name__}"],
                          source=display)
    parent_path, parent_display = resolve_parent(parent_ref, path, display, located, chain, "recipe")
    parent, parent_lines, chain = _load_chain(parent_path, parent_display, chain)
    merged_lines = dict(parent_lines)
    problems: list[str] = []
    child = dict(data)
    child.pop("extends")
    # A variant is its own recipe: unless it says otherwise, it is named after its file.
    child.setdefault("name", path.stem)
    stage_patch = child.pop("stages", None)
    merged = _merge(parent, child)
    merged.pop("extends", None)
    for key_path, where in located.lines.items():
        if key_path and key_path[0] != "stages" and key_path != ("extends",):
            merged_lines[key_path] = where
    if isinstance(stage_patch, dict):
        merged["stages"] = _patch_stages(parent["stages"] if isinstance(parent.get("stages"), list) else [], stage_patch, located, merged_lines, problems)
    elif stage_patch is not None:
        merged["stages"] = stage_patch
        merged_lines = {k: v for k, v in merged_lines.items() if not k or k[0] != "stages"}
        merged_lines.update({k: v for k, v in located.lines.items() if k and k[0] == "stages"})
    if problems:
        raise RecipeError(problems, source=display)
    return merged, merged_lines, chain


def _stage_mapping_as_list(data: dict) -> dict:
    """``stages: {id: stage, ...}`` in a recipe that extends nothing: the same
    stages as a list, in order, each with its key as ``id`` (checked as list
    stages are; a value that is not a mapping is reported by the schema)."""
    stages = [({"branch": stage_id, **spec} if is_branch_item(spec) else {"id": stage_id, **spec})
              if isinstance(spec, dict) else spec for stage_id, spec in data["stages"].items()]
    return {**data, "stages": stages}


def _stage_lines_by_index(data: dict, located: Located) -> dict:
    """The lines of a stage mapping, keyed as the list it becomes."""
    index = {stage_id: i for i, stage_id in enumerate(data["stages"])}
    lines = {}
    for key_path, where in located.lines.items():
        if key_path[:1] == ("stages",) and len(key_path) >= 2 and key_path[1] in index:
            lines[("stages", index[key_path[1]]) + key_path[2:]] = where
            if len(key_path) == 2:
                lines[("stages", index[key_path[1]], "id")] = where
        else:
            lines[key_path] = where
    return lines


def _parent_path(parent_ref: str, path: Path, what: str = "recipe") -> Path:
    """Where ``extends: parent_ref`` in ``path`` points: beside the child, or
    in ``recipes/`` (``aidsafe.yaml``, or by name: ``aidsafe``); a
    :class:`UserError` when that is outside both."""
    base = path.parent
    if not (base / parent_ref).is_file() and not Path(parent_ref).suffix \
            and (paths.recipes_dir() / f"{parent_ref}.yaml").is_file():
        parent_ref = f"{parent_ref}.yaml"  # `extends: aidsafe` names a shipped recipe, as `aidsafe run aidsafe` does
    if not (base / parent_ref).is_file() and (paths.recipes_dir() / parent_ref).is_file():
        base = paths.recipes_dir()  # `extends: aidsafe.yaml` from anywhere means the shipped recipe
    return paths.resolve_inside(parent_ref, base, [paths.recipes_dir(), path.parent.resolve()], f"the parent {what}")


def resolve_parent(parent_ref: str, path: Path, display: str, located: Located, chain: list[str],
                   what: str) -> tuple[Path, str]:
    """The file ``extends: parent_ref`` names and its display name, for recipes
    and judges files alike; every problem (outside the allowed folders, an
    unusable name, a cycle, missing) is a :class:`RecipeError` at the
    ``extends:`` line."""
    file, line = located.where(("extends",))
    try:
        parent_path = _parent_path(parent_ref, path, what)
        found = parent_path.is_file()
    except UserError as exc:
        raise RecipeError([f"{file}:{line} extends: {exc}"], source=display) from None
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise RecipeError([f"{file}:{line} extends: {parent_ref!r} is not a usable file name ({exc}); "
                           f"name the parent {what} by its file name"], source=display) from None
    parent_display = _display(parent_path)
    if parent_display in chain:
        raise RecipeError([f"{file}:{line} extends: an extends cycle {' -> '.join(chain + [parent_display])}; "
                           "remove one of the `extends:` lines"], source=display)
    if not found:
        raise RecipeError([f"{file}:{line} extends: {parent_ref!r} not found (looked at {str(parent_path)!r})"],
                          source=display)
    return parent_path, parent_display


def _display(path: Path) -> str:
    """Relative to the project inside it, else absolute: one name per file, so
    an extends cycle is seen and a ``prompts:`` folder resolves from any cwd."""
    try:
        return str(path.resolve().relative_to(paths.project_root()))
    except ValueError:
        return str(path.resolve())


# ---------------------------------------------------------------- checks

def _semantic_problems(data: dict, located: Located) -> list[tuple[PathKey, str]]:
    from aidsafe.pipeline.stages import FILTERS, STAGES

    problems: list[tuple[PathKey, str]] = []
    models = data.get("models", {})
    agents = data.get("agents", {})
    stages = data.get("stages", [])

    for name, agent in agents.items():
        model = agent.get("model", "default")
        if models and model not in models:  # no models at all is the schema's problem
            where = ("agents", name, "model") if "model" in agent else ("agents", name)
            problems.append((where, f"agent {name!r} uses model {model!r}, which is not in `models`"
                                    f"{suggest(model, list(models))}; declare it under `models:` "
                                    f"or set `model:` to one of {', '.join(models)}"))

    from aidsafe.models.local._speculative import models_problems

    problems += models_problems(models)

    seen_ids: dict[str, int] = {}
    from aidsafe.pipeline._contract import RECORD_FIELDS

    problems += _input_problems(data.get("input"), agents)
    given = _input_fields(data)
    produced = {"query", *given}
    # record fields written so far: what conditions and agents can read
    fields = {"query": RECORD_FIELDS["query"], **given}
    # keys that only some kinds take: role slots (``judge: NAME``) and options
    kind_keys = sorted({key for k in STAGES.names() for key in (*getattr(STAGES.get(k), "slots", {}),
                                                                *STAGES.get(k).options)} - {"agents", "stop"})
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue  # the schema reports it
        base = ("stages", index)
        stage_id, kind = stage.get("id"), stage.get("kind")
        if stage_id in seen_ids:
            problems.append((base + ("id",), f"duplicate stage id {stage_id!r} (also stages[{seen_ids[stage_id]}]); "
                                             "give each stage a unique id"))
        seen_ids[stage_id] = index
        if kind not in STAGES:
            problems.append((base + ("kind",), f"unknown stage kind {kind!r}{suggest(kind, STAGES.names())}; "
                                               f"known kinds: {', '.join(STAGES.names())}"))
            continue
        kind_cls = STAGES.get(kind)
        problems += _branch_problems(stage, base, index, stages, fields, agents)
        problems += _condition_problems(stage, base, "when", fields, agents)
        stage_contract = contract = kind_cls.contract_for(stage, agents, dict(fields))
        problems += kind_cls.check_flow(stage, agents, dict(fields))
        # a kind names the key a problem is about, or a path inside the stage as a tuple
        problems += [(base + (key if isinstance(key, tuple) else (key,)), msg)
                     for key, msg in kind_cls.check_spec(stage)]
        for need in contract.requires:
            if need not in produced:
                makers = [k for k in STAGES.names() if need in STAGES.get(k).contract.produces]
                problems.append((base + ("kind",), f"stage {stage_id!r} ({kind}) needs `{need}`, which no earlier "
                                                   f"stage produces; add a {' or '.join(makers)} stage before it"))
        produced |= set(contract.produces)
        fields.update(kind_cls.writes(stage, agents, stage_contract))
        problems += _condition_problems(stage, base, "where", fields, agents)
        slots = getattr(kind_cls, "slots", {})
        for key in kind_keys:
            if key in stage and key not in slots and key not in kind_cls.options:
                takers = [k for k in STAGES.names()
                          if key in getattr(STAGES.get(k), "slots", {}) or key in getattr(STAGES.get(k), "options", ())]
                problems.append((base + (key,), f"stage kind {kind} takes no `{key}:`; it applies to "
                                                f"{', '.join(takers)} stages; remove it"))
        for rel_path, agent_name, contract in [(path, name, stage_contract if c is kind_cls.contract else c)
                                               for path, name, c in kind_cls.agent_refs(stage)]:
            key_path = base + rel_path
            if agent_name not in agents:
                problems.append((key_path, f"unknown agent {agent_name!r}{suggest(agent_name, list(agents))}; "
                                           f"declared agents: {', '.join(agents)}"))
                continue
            agent = agents[agent_name]
            for i, input_name in enumerate(agent.get("inputs", []) or []):
                if input_name not in contract.inputs:
                    problems.append((("agents", agent_name, "inputs", i),
                                     f"agent {agent_name!r} is used by stage {stage_id!r} ({kind}), which offers "
                                     f"inputs {', '.join(contract.inputs)}; {input_name!r} is not one of them"
                                     f"{suggest(input_name, list(contract.inputs))}"))
            for out_name, out in (agent.get("outputs") or {}).items():
                if out_name in contract.outputs and isinstance(out, dict) and "type" in out \
                        and out["type"] != contract.outputs[out_name].type:
                    problems.append((("agents", agent_name, "outputs", out_name, "type"),
                                     f"stage kind {kind} needs `{out_name}` of type "
                                     f"{contract.outputs[out_name].type}, found {out['type']}; "
                                     "drop `type:` or use that type"))
        for group, flist in StageSpec(stage_id, kind, None, (), stage, index).filters.items():
            for j, spec in enumerate(flist):
                if isinstance(stage.get("filters"), list):
                    fpath = base + ("filters", j)
                else:
                    fpath = base + ("filters", group, j)
                ftype = spec.get("type")
                if ftype not in FILTERS:
                    problems.append((fpath + ("type",), f"unknown filter {ftype!r}{suggest(str(ftype), FILTERS.names())}; "
                                                        f"known filters: {', '.join(FILTERS.names())}"))
                    continue
                problems += [(fpath + (k,), m) for k, m in FILTERS.get(ftype).check(spec)]

    problems += _output_problems(data.get("output"), fields)
    policy = data.get("policies")
    if policy is not None:  # every form (a set, inline, {set, include, add}), each problem at its line
        from aidsafe.config._policies import policies_problems

        problems += policies_problems(policy, located, Path(located.file).parent if located.file else None)
    return problems


_CONDITION_HELP = ("write e.g. risk == 'high' and severity >= 3 (compare with == != < <= > >=, test with in "
                   "[...] / not in, combine with and, or, not and parentheses; quote text values)")


def _input_fields(data: dict) -> dict:
    """The record fields the recipe's ``input:`` gives every stage (its
    columns and label); none from an ``input:`` the schema refused."""
    cfg = data.get("input")
    if not isinstance(cfg, dict):
        return {}
    columns, label = cfg.get("columns"), cfg.get("label")
    usable = {k: v for k, v in cfg.items() if k in ("columns", "label")
              and isinstance(v, (list, dict, str)) and not (k == "columns" and isinstance(v, str))}
    if isinstance(columns, list) and not all(isinstance(c, str) for c in columns):
        usable.pop("columns", None)
    if isinstance(label, dict) and not all(isinstance(label.get(k, ""), str) for k in ("column", "default")):
        usable.pop("label", None)
    return InputSpec.from_dict(usable).record_fields()


def _input_problems(cfg: Any, agents: dict) -> list[tuple[PathKey, str]]:
    """Input column names that a record cannot carry: a name the record
    keeps for itself, or one an agent also declares as an output."""
    from aidsafe.pipeline._contract import OUTPUT_KEYS, RESERVED_FIELDS, WRITABLE_FIELDS

    columns = cfg.get("columns") if isinstance(cfg, dict) else None
    names = columns if isinstance(columns, list) else list(columns) if isinstance(columns, dict) else []
    declared = {name for agent in agents.values() if isinstance(agent, dict)
                and isinstance(agent.get("outputs"), dict) for name in agent["outputs"]}
    problems = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        where = ("input", "columns", i) if isinstance(columns, list) else ("input", "columns", name)
        rename = f"`columns: {{{name}_col: {name}}}`" if isinstance(columns, list) else "another field name"
        if name in (*RESERVED_FIELDS, *WRITABLE_FIELDS, *OUTPUT_KEYS, "label"):
            what = "the label field (`input.label`)" if name == "label" else "a field the record keeps for itself"
            problems.append((where, f"input column {name!r} cannot be a record field: {name!r} is {what}; "
                                    f"read it under another name, e.g. {rename}"))
        elif name in declared:
            problems.append((where, f"input column {name!r} has the name of an agent output; rename one of them, "
                                    f"e.g. {rename}"))
    return problems


def _branch_problems(stage: dict, base: PathKey, index: int, stages: list, fields: dict,
                     agents: dict) -> list[tuple[PathKey, str]]:
    """A stage of a branch (``branch: {name, when}``, see config/_branches.py):
    at the branch's first stage, its condition against the fields written
    before the branch; its name is neither a stage id nor a second branch."""
    branch = stage.get("branch")
    if not isinstance(branch, dict) or not isinstance(branch.get("name"), str):
        return []
    name = branch["name"]
    previous = stages[index - 1] if index else None
    if isinstance(previous, dict) and isinstance(previous.get("branch"), dict) \
            and previous["branch"].get("name") == name:
        return []  # not the branch's first stage: checked there
    where = base + ("branch",)
    ids = {s.get("id"): i for i, s in enumerate(stages) if isinstance(s, dict)}
    problems: list[tuple[PathKey, str]] = []
    if name in ids:
        problems.append((where + ("name",), f"branch {name!r} has the name of stage {name!r} (stages[{ids[name]}]); "
                                            "give the branch its own name"))
    earlier = [i for i, s in enumerate(stages[:index]) if isinstance(s, dict)
               and isinstance(s.get("branch"), dict) and s["branch"].get("name") == name]
    if earlier:
        problems.append((where + ("name",), f"two branches are named {name!r} (also stages[{earlier[0]}]); "
                                            "give each its own name, or merge them into one"))
    return problems + _condition_problems(branch, where, "when", fields, agents)


def _condition_problems(stage: dict, base: PathKey, key: str, fields: dict, agents: dict) -> list[tuple[PathKey, str]]:
    """A stage's ``when:`` (fields written before it) or ``where:`` (after
    it): the condition parses, every field it reads exists by then, and a
    text compared with an ``enum`` field is one of its values."""
    from aidsafe.pipeline._conditions import (
        ConditionError,
        ListLit,
        Literal,
        Path,
        comparisons,
        parse,
        paths,
        type_problems,
    )

    text = stage.get(key)
    if not isinstance(text, str):
        return []  # absent, or the schema reports it
    where = base + (key,)
    try:
        node = parse(text)
    except ConditionError as exc:
        return [(where, f"cannot read the condition {text!r}: {exc}; {_CONDITION_HELP}")]
    problems = []
    declared = {name for agent in agents.values() if isinstance(agent, dict)
                and isinstance(agent.get("outputs"), dict) for name in agent["outputs"]}
    moment = "before this stage runs" if key == "when" else "once this stage has run"
    for path in paths(node):
        parts = path.parts[1:] if path.parts[0] == "extra" and len(path.parts) > 1 else path.parts
        if parts[0] not in fields:
            later = f"; {parts[0]!r} is written only by a later stage" if parts[0] in declared else ""
            problems.append((where, f"unknown field {parts[0]!r} in the condition {text!r}"
                                    f"{suggest(parts[0], list(fields))}{later}; fields {moment}: "
                                    f"{', '.join(sorted(fields))}"))
        elif len(parts) > 1 and fields[parts[0]].type not in ("dict", "list[str]", ""):
            problems.append((where, f"{'.'.join(path.parts)!r}: {parts[0]!r} is a {fields[parts[0]].type}, it has "
                                    f"no `.{parts[1]}`; compare {parts[0]!r} itself"))
    for compare in comparisons(node):
        sides = (compare.left, compare.right)
        field_path = next((s for s in sides if isinstance(s, Path) and len(s.parts) == 1), None)
        spec = fields.get(field_path.parts[0]) if field_path else None
        mismatched = type_problems(text, compare, spec.name, spec.type) if spec is not None else []
        problems += [(where, message) for message in mismatched]
        if spec is None or not spec.enum or mismatched:
            continue
        values = [s.value for s in sides if isinstance(s, Literal)]
        values += [i.value for s in sides if isinstance(s, ListLit) for i in s.items]
        for value in values:
            if value not in spec.enum:
                problems.append((where, f"{spec.name!r} is one of {', '.join(spec.enum)}; {value!r} never matches"
                                        f"{suggest(str(value), list(spec.enum))}"))
    return problems


def _output_problems(output: Any, fields: dict) -> list[tuple[PathKey, str]]:
    """``output: {fields, rename}`` name fields an output record has (its
    keys, or a declared agent/``predict`` output) and renames do not collide."""
    from aidsafe.pipeline._contract import ALWAYS_KEPT, OUTPUT_KEYS

    if not isinstance(output, dict):
        return []
    known = list(OUTPUT_KEYS) + [f for f in fields if f not in OUTPUT_KEYS and f not in ("query", "thoughts")]
    aliases = {"thoughts": "cot", "query": "prompt"}
    problems: list[tuple[PathKey, str]] = []
    listed = output.get("fields") if isinstance(output.get("fields"), list) else None

    def unknown(name: str) -> str:
        hint = f"; the record calls it {aliases[name]!r}" if name in aliases else suggest(name, known)
        return f"no output field {name!r}{hint}; fields: {', '.join(known)}"

    for i, name in enumerate(listed or []):
        if isinstance(name, str) and name not in known:
            problems.append((("output", "fields", i), unknown(name)))
    rename = output.get("rename") if isinstance(output.get("rename"), dict) else {}
    given = {name for name, spec in fields.items() if spec.source == "input"}  # top-level record fields
    kept = set(listed) | set(ALWAYS_KEPT) | {"id", "index", "status"} if listed is not None \
        else set(OUTPUT_KEYS) | given
    targets = [n for n in rename.values() if isinstance(n, str)]
    for old, new in rename.items():
        where = ("output", "rename", old)
        if old in ALWAYS_KEPT:
            problems.append((where, f"{old!r} cannot be renamed: resume and every reader of a run rely on it; "
                                    "remove it from `rename:`"))
        elif old not in known:
            problems.append((where, unknown(old)))
        elif old not in kept:
            problems.append((where, f"{old!r} is not in `output.fields`; add it there (a declared output is "
                                    "lifted out of `extra` only when listed) or remove the rename"))
        elif not isinstance(new, str) or not new:
            problems.append((where, f"rename {old!r} to a non-empty name, found {new!r}"))
        elif new != old and new in kept and new not in rename:
            problems.append((where, f"renaming {old!r} to {new!r} collides with the record's own {new!r}; "
                                    "pick another name, or rename that one too"))
        elif targets.count(new) > 1:
            problems.append((where, f"two fields are renamed to {new!r}; give each its own name"))
    return problems


def load_recipe(path: str | Path) -> Recipe:
    """Load a recipe file, resolve ``extends``, validate everything and return
    typed specs. Raises :class:`RecipeError` listing every problem."""
    path = Path(path)
    if not path.is_file() and not path.suffix and (paths.recipes_dir() / f"{path}.yaml").is_file():
        path = paths.recipes_dir() / f"{path}.yaml"  # `aidsafe run aidsafe` means recipes/aidsafe.yaml
    display = _display(path)
    if not path.is_file():
        known = sorted(p.stem for p in paths.recipes_dir().glob("*.yaml"))
        raise UserError(f"recipe {str(path)!r} not found{suggest(path.stem, known)}; shipped recipes: {', '.join(known)}")
    data, lines, chain = _load_chain(path, display, [])
    located = Located(data=data, lines=lines, file=display)
    problems = schema_problems(located, "recipe.schema.json")
    # Policy paths are relative to the recipe that is loaded.
    located_for_checks = Located(data=data, lines=lines, file=str(path))
    semantic = _all_semantic_problems(data, located_for_checks, path, [_reported_at(*item) for item in problems])
    if problems:
        # Every problem at once: the schema's and the checks that need the registries, in line order.
        texts = problems + [(key, _located_text(located, key, message)) for key, message in semantic]
        texts.sort(key=lambda item: located.where(item[0])[1])
        raise RecipeError([text for _, text in texts], source=display)
    raise_located(semantic, located, display)
    return _build(path.resolve(), data, located, chain)


def _located_text(located: Located, key: PathKey, message: str) -> str:
    file, line = located.where(key)
    return f"{file}:{line} {format_path(key)}: {message}"


def _reported_at(key: PathKey, text: str) -> PathKey:
    """The place a schema problem is about: a missing key's own path, else its path."""
    missing = re.search(r"missing required key '([^']+)'", text)
    return tuple(key) + (missing.group(1),) if missing else tuple(key)


def _all_semantic_problems(data: dict, located: Located, path: Path,
                           schema_paths: list[PathKey]) -> list[tuple[PathKey, str]]:
    """The checks beyond the schema, also when the schema found problems (so
    one ``validate`` shows them all). Values the schema refused are left out
    first, and a problem at or under a place the schema already reported is
    dropped: one problem per mistake."""
    if not schema_paths:
        return _semantic_problems(data, located) + _field_problems(data, located, path)
    pruned = _without(data, schema_paths)
    try:
        found = _semantic_problems(pruned, located) + _field_problems(pruned, located, path)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        # a malformed value the schema reported broke a later check; the schema problems say what to fix
        return []
    return [(key, message) for key, message in found
            if not any(tuple(key[:len(bad)]) == tuple(bad) for bad in schema_paths)]


def _without(data: dict, bad_paths: list[PathKey]) -> dict:
    """A copy of ``data`` without the values at ``bad_paths`` (a list item
    becomes None, so later indexes and their lines stay right)."""
    pruned = copy.deepcopy(data)
    for bad in sorted(bad_paths, key=len, reverse=True):
        if not bad:
            continue
        parent = pruned
        for part in bad[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if isinstance(parent, dict):
            parent.pop(bad[-1], None)
        elif isinstance(parent, list) and isinstance(bad[-1], int) and bad[-1] < len(parent):
            parent[bad[-1]] = None
    return pruned


# Names a dspy.Signature class already uses (its metaclass's and pydantic's):
# an output field named so breaks building the signature. Kept here, not
# read from DSPy, so validate needs no DSPy; tests/config/test_yaml_loading.py
# checks the list against the installed DSPy. pydantic reserves `model_*`.
SIGNATURE_ATTRIBUTES = frozenset({"fields", "input_fields", "instructions", "output_fields", "signature"})


def _field_problems(data: dict, located: Located, path: Path) -> list[tuple[PathKey, str]]:
    """Checks of names a record or a signature will carry: agent output
    names, ``required_fields`` against the fields the record has by then, and
    the ``prompts:`` folder (read as ``run`` reads it)."""
    import keyword

    from aidsafe.pipeline.stages import STAGES

    problems: list[tuple[PathKey, str]] = []
    agents = data.get("agents") if isinstance(data.get("agents"), dict) else {}
    extras: set[str] = set()
    for name, agent in agents.items():
        outputs = agent.get("outputs") if isinstance(agent, dict) else None
        for out_name in outputs if isinstance(outputs, dict) else {}:
            extras.add(out_name)
            out = outputs[out_name]
            if isinstance(out, dict) and out.get("enum") and out.get("type") not in (None, "str"):
                values = ", ".join(map(str, out["enum"]))
                numeric = out["type"] in ("int", "float")
                problems.append((("agents", name, "outputs", out_name, "enum"),
                                 f"`enum:` lists allowed text values and applies to `type: str` fields; {out_name!r} is "
                                 f"`type: {out['type']}`, so [{values}] would make it text; "
                                 + (f"drop `enum:` and bound the number with a condition, e.g. "
                                    f"`where: \"{out_name} >= 1 and {out_name} <= 5\"`, or drop `type: {out['type']}` "
                                    "for a text enum" if numeric else f"drop `type: {out['type']}` or `enum:`")))
            if out_name in SIGNATURE_ATTRIBUTES or out_name.startswith("model_"):
                problems.append((("agents", name, "outputs", out_name),
                                 f"output name {out_name!r} is taken by DSPy's signatures; rename it, "
                                 f"e.g. `{out_name.removeprefix('model_')}_text:`"))
            elif not out_name.isidentifier() or keyword.iskeyword(out_name) or out_name.startswith("_"):
                fixed = re.sub(r"\W+", "_", out_name).strip("_") or "field"
                fixed = f"field_{fixed}" if fixed[0].isdigit() else f"{fixed}_" if keyword.iskeyword(fixed) else fixed
                problems.append((("agents", name, "outputs", out_name),
                                 f"output name {out_name!r} cannot name a field: use letters, digits and '_', "
                                 f"starting with a letter, and not a Python keyword; e.g. `{fixed}:`"))
    problems += _precedent_problems(agents, data.get("models") if isinstance(data.get("models"), dict) else {},
                                    located, path)
    produced = {"query", *_input_fields(data)}
    stages = data.get("stages") if isinstance(data.get("stages"), list) else []
    for index, stage in enumerate(stages):
        kind = stage.get("kind") if isinstance(stage, dict) else None
        if not isinstance(kind, str) or kind not in STAGES:
            continue
        before = set(produced)
        produced |= set(STAGES.get(kind).contract.produces)
        filters = stage.get("filters")
        groups = {"after": filters} if isinstance(filters, list) else filters if isinstance(filters, dict) else {}
        for group, flist in groups.items():
            for j, spec in enumerate(flist if isinstance(flist, list) else []):
                if not isinstance(spec, dict) or spec.get("type") != "required_fields":
                    continue
                fpath = ("stages", index, "filters") + ((j,) if isinstance(filters, list) else (group, j))
                known = (before if group == "before" else produced) | extras
                for k, field_name in enumerate(spec.get("fields") or []):
                    if isinstance(field_name, str) and field_name not in known:
                        problems.append((fpath + ("fields", k),
                                         f"no record field {field_name!r} at this point{suggest(field_name, known)}; "
                                         f"fields here: {', '.join(sorted(known))}; a missing field would "
                                         "filter every record"))
    prompts = data.get("prompts")
    if isinstance(prompts, str):
        from aidsafe.config._prompts import read_prompts

        try:
            loaded = read_prompts(prompts, located, path.resolve(), agents)
        except UserError as exc:
            problems.append((("prompts",), str(exc).removeprefix("prompts: ")))
        else:
            problems += [(("prompts",), message) for message in _demo_condition_problems(loaded, data)]
    return problems


def _precedent_problems(agents: dict, models: dict, located: Located, path: Path) -> list[tuple[PathKey, str]]:
    """``demos: {select: nearest, pool, embedder}``: the pool file exists
    inside the allowed folders, and the embedder is ``lexical`` or a model."""
    problems: list[tuple[PathKey, str]] = []
    for name, agent in agents.items():
        demos = agent.get("demos") if isinstance(agent, dict) else None
        if not isinstance(demos, dict) or not isinstance(demos.get("pool"), str):
            continue
        where = ("agents", name, "demos")
        embedder = demos.get("embedder", "lexical")
        if isinstance(embedder, str) and embedder != "lexical" and embedder not in models:
            problems.append((where + ("embedder",), f"embedder {embedder!r} is neither `lexical` nor a model in "
                                                    f"`models:`{suggest(embedder, ['lexical', *models])}; "
                                                    "name a models entry (e.g. one with `model: local:default`)"))
        try:
            from aidsafe.config._prompts import resolve_data_file

            pool = resolve_data_file(demos["pool"], located, where + ("pool",), path.resolve(), "precedent pool")
            found = pool.is_file()
        except UserError as exc:
            problems.append((where + ("pool",), str(exc)))
            continue
        except (OSError, ValueError) as exc:  # a name too long for the file system
            problems.append((where + ("pool",), f"{demos['pool']!r} is not a usable file name ({exc}); name the "
                                                "pool by its path, e.g. ../data/precedents/pool.jsonl"))
            continue
        if not found:
            problems.append((where + ("pool",), f"precedent pool {demos['pool']!r} not found (looked at {pool}); "
                                                "give a JSONL or CSV of labeled queries, e.g. the shipped "
                                                "data/precedents/pool.jsonl"))
    return problems


def _demo_condition_problems(prompts: dict, data: dict) -> list[str]:
    """Each demo's ``when:`` parses and reads fields the record has."""
    from aidsafe.pipeline._conditions import ConditionError, parse, paths
    from aidsafe.pipeline._contract import RECORD_FIELDS
    from aidsafe.pipeline.stages._base import dataflow

    try:
        flows = dataflow(data.get("stages") or [], data.get("agents") or {}, _input_fields(data))
        known = {"query", *RECORD_FIELDS, *_input_fields(data), *(n for f in flows for n in f.writes)}
    except (AttributeError, KeyError, TypeError, ValueError, UserError):
        return []  # a broken stage (an unknown kind, ...) is reported where it is
    problems = []
    for agent, entry in prompts["agents"].items():
        for i, demo in enumerate(entry.get("demos") or [] if isinstance(entry, dict) else []):
            text = demo.get("when") if isinstance(demo, dict) else None
            if text is None:
                continue
            where = f"agents.{agent}.demos[{i}].when"
            if not isinstance(text, str):
                problems.append(f"{where}: expected a condition text, e.g. \"decision == 'answer'\", found {text!r}")
                continue
            try:
                node = parse(text)
            except ConditionError as exc:
                problems.append(f"{where}: cannot read the condition {text!r}: {exc}; {_CONDITION_HELP}")
                continue
            for field_path in paths(node):
                head = field_path.parts[1] if field_path.parts[0] == "extra" and len(field_path.parts) > 1 \
                    else field_path.parts[0]
                if head not in known:
                    problems.append(f"{where}: unknown field {head!r} in {text!r}{suggest(head, sorted(known))}; "
                                    f"fields: {', '.join(sorted(known))}")
    return problems


def _build(path: Path, data: dict, located: Located, chain: list[str]) -> Recipe:
    models = {name: ModelSpec.from_dict(name, spec) for name, spec in data["models"].items()}
    agents = {}
    for name, spec in data["agents"].items():
        outputs = {out_name: FieldSpec.from_yaml(out_name, out) for out_name, out in (spec.get("outputs") or {}).items()}
        inputs = tuple(spec["inputs"]) if spec.get("inputs") is not None else None
        agents[name] = AgentSpec(name=name, instructions=spec["instructions"].strip(),
                                 model=spec.get("model", "default"), inputs=inputs, outputs=outputs,
                                 temperature=spec.get("temperature"), max_tokens=spec.get("max_tokens"),
                                 demos=spec.get("demos"))
    from aidsafe.pipeline.stages import STAGES

    stages = [StageSpec(id=s["id"], kind=s["kind"], agent=s.get("agent"), agents=tuple(s.get("agents", [])),
                        raw=s, index=i, slot_agents=tuple(name for path, name, _ in STAGES.get(s["kind"]).agent_refs(s)
                                                          if path[0] not in ("agent", "agents")))
              for i, s in enumerate(data["stages"])]
    policy = data["policies"]
    input_cfg = data.get("input", {})
    input_spec = InputSpec.from_dict(input_cfg)
    warnings = []
    uses_behavior = any(f.get("type") == "behavior" for s in stages for group in s.filters.values() for f in group)
    if uses_behavior and input_spec.label is None:
        warnings.append(f"{located.file}: a `behavior` filter checks responses against the input's label, but "
                        "`input.label` is not set, so it passes every record; add e.g. `input: {label: label}`")
    return Recipe(
        name=data["name"], path=path, data=data, located=located, chain=chain, models=models, agents=agents,
        stages=stages, policy_ref=policy if isinstance(policy, str) else policy["set"] if isinstance(policy, dict)
        else "inline", policy_include=policy.get("include") if isinstance(policy, dict) else None,
        inline_policies=policy if isinstance(policy, list) else None,
        input_field=input_cfg.get("field", "prompt"), id_field=input_cfg.get("id_field", "id"),
        keep_fields=input_cfg.get("keep", []), adapter=data.get("adapter", "json"),
        max_parse_retries=data.get("max_parse_retries", 2), prompts=data.get("prompts"),
        output=data.get("output", {}), prompt_layout=data.get("prompt_layout", "stable_first"),
        input=input_spec, warnings=warnings,
    )
