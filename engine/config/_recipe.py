"""Recipes: YAML -> dict (with ``extends`` resolved) -> JSON Schema -> checks
that need the registries -> typed specs.

This is the only load path. Every problem found is reported at once, each
with ``file:line json.path: what was expected, what was found, the fix``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from aidsafe._util import paths
from aidsafe._util.errors import RecipeError, UserError
from aidsafe._util.registry import suggest
from aidsafe.config._schema import raise_located, schema_problems
from aidsafe.config._specs import AgentSpec, FieldSpec, ModelSpec, Recipe, StageSpec
from aidsafe.config._yaml import Located, PathKey, load_yaml_file

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
            problems.append(f"{where[0]}:{where[1]} stages.{stage_id}: expected a mapping of stage keys to override, "
                            f"found {type(partial).__name__}")
            continue
        if stage_id not in ids:
            if partial is None or "kind" not in partial:
                problems.append(f"{where[0]}:{where[1]} stages.{stage_id}: the parent recipe has no stage {stage_id!r}"
                                f"{suggest(stage_id, ids)}; patch one of {', '.join(map(str, ids))}, or add a new "
                                f"stage by giving its `kind:` (and `after: ID` to place it)")
                continue
            new = {"id": stage_id, **{k: v for k, v in partial.items() if k != "after"}}
            after = partial.get("after")
            if after is not None and after not in ids:
                problems.append(f"{where[0]}:{where[1]} stages.{stage_id}.after: no stage {after!r}{suggest(str(after), ids)}")
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
    if parent_ref is None:
        if isinstance(data.get("stages"), dict):
            return _stage_mapping_as_list(data), _stage_lines_by_index(data, located), chain
        return data, dict(located.lines), chain
    if not isinstance(parent_ref, str):
        file, line = located.where(("extends",))
        raise RecipeError([f"{file}:{line} extends: expected a path string, found {type(parent_ref).__name__}"],
                          source=display)
    base = path.parent
    if not (base / parent_ref).is_file() and (paths.recipes_dir() / parent_ref).is_file():
        base = paths.recipes_dir()  # `extends: aidsafe.yaml` from anywhere means the shipped recipe
    parent_path = paths.resolve_inside(parent_ref, base, [paths.recipes_dir(), path.parent.resolve()],
                                       f"{display}: extends")
    parent_display = _display(parent_path)
    if parent_display in chain:
        raise RecipeError([f"{display}: extends cycle: {' -> '.join(chain + [parent_display])}; "
                           "remove one of the `extends:` lines"], source=display)
    if not parent_path.is_file():
        file, line = located.where(("extends",))
        raise RecipeError([f"{file}:{line} extends: {parent_ref!r} not found (looked at {parent_path})"],
                          source=display)
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
        merged["stages"] = _patch_stages(parent.get("stages", []), stage_patch, located, merged_lines, problems)
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
    stages = [{"id": stage_id, **spec} if isinstance(spec, dict) else spec
              for stage_id, spec in data["stages"].items()]
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


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.project_root()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- checks

def _semantic_problems(data: dict, located: Located) -> list[tuple[PathKey, str]]:
    from aidsafe.pipeline.stages import FILTERS, STAGES

    problems: list[tuple[PathKey, str]] = []
    models = data.get("models", {})
    agents = data.get("agents", {})
    stages = data.get("stages", [])

    for name, agent in agents.items():
        model = agent.get("model", "default")
        if model not in models:
            where = ("agents", name, "model") if "model" in agent else ("agents", name)
            problems.append((where, f"agent {name!r} uses model {model!r}, which is not in `models`"
                                    f"{suggest(model, list(models))}; declare it under `models:` "
                                    f"or set `model:` to one of {', '.join(models)}"))

    seen_ids: dict[str, int] = {}
    produced = {"query"}
    from aidsafe.pipeline._contract import RECORD_FIELDS

    fields = {"query": RECORD_FIELDS["query"]}  # record fields written so far: what conditions and agents can read
    # keys that only some kinds take: role slots (``judge: NAME``) and options
    kind_keys = sorted({key for k in STAGES.names() for key in (*getattr(STAGES.get(k), "slots", {}),
                                                                *STAGES.get(k).options)} - {"agents", "stop"})
    for index, stage in enumerate(stages):
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
    if isinstance(policy, list):  # written inline: the policy schema, at the recipe's lines
        from aidsafe.config._policies import inline_policy_problems

        problems += inline_policy_problems(policy, located)
    elif policy is not None:
        ref = policy if isinstance(policy, str) else policy.get("set")
        include = None if isinstance(policy, str) else policy.get("include")
        try:
            from aidsafe.config._policies import load_policy_set

            load_policy_set(ref, Path(located.file).parent if located.file else None, include)
        except RecipeError as exc:
            problems += [(("policies",), p) for p in exc.problems]
        except UserError as exc:
            problems.append((("policies",), str(exc)))
    return problems


_CONDITION_HELP = ("write e.g. risk == 'high' and severity >= 3 (compare with == != < <= > >=, test with in "
                   "[...] / not in, combine with and, or, not and parentheses; quote text values)")


def _condition_problems(stage: dict, base: PathKey, key: str, fields: dict, agents: dict) -> list[tuple[PathKey, str]]:
    """A stage's ``when:`` (fields written before it) or ``where:`` (after
    it): the condition parses, every field it reads exists by then, and a
    text compared with an ``enum`` field is one of its values."""
    from aidsafe.pipeline._conditions import ConditionError, ListLit, Literal, Path, comparisons, parse, paths

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
        if spec is None or not spec.enum:
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
    kept = set(listed) | set(ALWAYS_KEPT) | {"id", "index", "status"} if listed is not None else set(OUTPUT_KEYS)
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
    if problems:
        raise RecipeError([text for _, text in problems], source=display)
    # Policy paths are relative to the recipe that is loaded.
    located_for_checks = Located(data=data, lines=lines, file=str(path))
    raise_located(_semantic_problems(data, located_for_checks), located, display)
    return _build(path.resolve(), data, located, chain)


def _build(path: Path, data: dict, located: Located, chain: list[str]) -> Recipe:
    models = {name: ModelSpec.from_dict(name, spec) for name, spec in data["models"].items()}
    agents = {}
    for name, spec in data["agents"].items():
        outputs = {out_name: FieldSpec.from_yaml(out_name, out) for out_name, out in (spec.get("outputs") or {}).items()}
        inputs = tuple(spec["inputs"]) if spec.get("inputs") is not None else None
        agents[name] = AgentSpec(name=name, instructions=spec["instructions"].strip(),
                                 model=spec.get("model", "default"), inputs=inputs, outputs=outputs,
                                 temperature=spec.get("temperature"), max_tokens=spec.get("max_tokens"))
    from aidsafe.pipeline.stages import STAGES

    stages = [StageSpec(id=s["id"], kind=s["kind"], agent=s.get("agent"), agents=tuple(s.get("agents", [])),
                        raw=s, index=i, slot_agents=tuple(name for path, name, _ in STAGES.get(s["kind"]).agent_refs(s)
                                                          if path[0] not in ("agent", "agents")))
              for i, s in enumerate(data["stages"])]
    policy = data["policies"]
    input_cfg = data.get("input", {})
    return Recipe(
        name=data["name"], path=path, data=data, located=located, chain=chain, models=models, agents=agents,
        stages=stages, policy_ref=policy if isinstance(policy, str) else policy["set"] if isinstance(policy, dict)
        else "inline", policy_include=policy.get("include") if isinstance(policy, dict) else None,
        inline_policies=policy if isinstance(policy, list) else None,
        input_field=input_cfg.get("field", "prompt"), id_field=input_cfg.get("id_field", "id"),
        keep_fields=input_cfg.get("keep", []), adapter=data.get("adapter", "json"),
        max_parse_retries=data.get("max_parse_retries", 2), prompts=data.get("prompts"),
        output=data.get("output", {}), prompt_layout=data.get("prompt_layout", "stable_first"),
    )
