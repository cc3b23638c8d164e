"""Looking before (and after) a run: ``show``, ``run --plan`` and
``cache explain``. Nothing here calls a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from aidsafe.pipeline._compile import Program
from aidsafe.runtime._records import read_inputs


def describe_recipe(program: Program) -> str:
    """The resolved recipe (after ``extends``) and its stage graph."""
    recipe = program.recipe
    lines = [f"# {recipe.name}  ({' <- '.join(recipe.chain)})", f"# recipe hash {recipe.hash[:16]}",
             f"# policies {program.policies.name} ({len(program.policies.policies)} policies, "
             f"hash {program.policies.hash[:16]})", ""]
    lines.append("stage graph:")
    lines.append("  input(query)")
    current = None  # the branch of the stages listed so far
    for stage in program.stage_modules():
        branch = getattr(stage, "branch", None)
        if branch is not None and branch != current:
            lines.append(f"  -> branch {branch.name}  when: {branch.when.text}")
        current = branch
        indent = "     " if branch is not None else ""
        agents = ", ".join(f"{a.spec.name}@{a.spec.model}" for a in stage.agent_modules()) or "no agent"
        detail = stage.describe()
        filters = [f.type for f in stage.filters_before] and f" filters-before={[f.type for f in stage.filters_before]}"
        after = [f.type for f in stage.filters_after] and f" filters-after={[f.type for f in stage.filters_after]}"
        conditions = "".join(f"  {key}: {stage.spec.raw[key]}" for key in ("when", "where")
                             if stage.spec.raw.get(key) is not None)
        writes = type(stage).writes(stage.spec.raw, recipe.data.get("agents") or {}, stage.contract)
        lines.append(f"  {indent}-> [{stage.spec.id}] {stage.kind} ({agents}){detail}{filters or ''}{after or ''}"
                     f"  writes: {', '.join(writes) or '-'}{conditions}")
    lines.append("  -> output record")
    lines.append("")
    lines.append("resolved recipe:")
    lines.append(yaml.safe_dump(recipe.data, sort_keys=False, allow_unicode=True, width=100).rstrip())
    return "\n".join(lines)


@dataclass
class StagePlan:
    reused: int = 0
    to_run: int = 0
    max_new_calls: int = 0
    skipped: int = 0  # records whose `when:` or branch is already known false (from cached stages)
    conditional: str = ""  # "branch NAME" / "when: ..." for a stage that runs only for some records


@dataclass
class Plan:
    records: int = 0
    stages: dict[str, StagePlan] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"plan for {self.records} record(s):"]
        total = behind = 0
        for stage_id, sp in self.stages.items():
            skipped = f"   skipped {sp.skipped:>5}" if sp.skipped else ""
            note = f"   ({sp.conditional})" if sp.conditional else ""
            out.append(f"  {stage_id:<16} reused {sp.reused:>5}   to run {sp.to_run:>5}   new LM calls <= "
                       f"{sp.max_new_calls}{skipped}{note}")
            total += sp.max_new_calls
            behind += sp.max_new_calls if sp.conditional else 0
        conditional = f", of which {behind} behind `when:` or a branch" if behind else ""
        out.append(f"  total new LM calls <= {total}{conditional} (upper bound: some may still come from the "
                   "call cache)")
        return out


def plan_run(program: Program, input_path: str | Path, field_name: str | None = None,
             id_field: str | None = None, limit: int | None = None) -> Plan:
    """Per stage: how many records come from the stage cache, how many run,
    and at most how many new LM calls that takes. Calls no model."""
    recipe = program.recipe
    plan = Plan(stages={sid: StagePlan() for sid in program.stage_ids})
    components = {s.spec.id: program.stage_components(s) for s in program.stage_modules()}
    for stage in program.stage_modules():
        branch, when = getattr(stage, "branch", None), getattr(stage, "when", None)
        plan.stages[stage.spec.id].conditional = "; ".join(
            ([f"branch {branch.name}: {branch.when.text}"] if branch else []) + ([f"when: {when.text}"] if when else []))
    for item in read_inputs(input_path, field_name or recipe.input_field, id_field or recipe.id_field, [], limit,
                            spec=recipe.input):
        plan.records += 1
        if item.error:
            continue
        state = {"query": item.prompt, **item.fields}
        missed = False
        branches: dict[str, bool] = {}
        for stage in program.stage_modules():
            sp = plan.stages[stage.spec.id]
            if not missed and _known_skip(stage, state, branches):
                sp.skipped += 1  # the state so far is known (cached): the condition is decided
                continue
            if not missed:
                key, _ = program.stage_key(stage, state, components[stage.spec.id])
                hit = program.cache.get_stage(key, count=False) if program.cache else None
                if hit is not None:
                    sp.reused += 1
                    state.update(hit["updates"])
                    if hit.get("filtered"):
                        break
                    continue
                missed = True
            sp.to_run += 1
            sp.max_new_calls += stage.max_calls()
    return plan


def _known_skip(stage, state: dict, branches: dict) -> bool:
    """Whether ``stage`` is skipped for a record whose state so far is
    known, as ``Program.run_record`` decides it."""
    branch, when = getattr(stage, "branch", None), getattr(stage, "when", None)
    if branch is not None:
        if branch.name not in branches:
            branches[branch.name] = branch.when.holds(state)
        if not branches[branch.name]:
            return True
    return when is not None and not when.holds(state)


def explain_record(program: Program, record_id: str, input_path: str | Path | None = None) -> list[str]:
    """Why a record's stages hit or miss the cache now: for each stage, the
    key parts that differ from the last time this record was computed."""
    recipe = program.recipe
    cache = program.cache
    query = None
    fields: dict = {}
    if input_path is not None:
        for item in read_inputs(input_path, recipe.input_field, recipe.id_field, spec=recipe.input):
            if item.id == str(record_id):
                query, fields = item.prompt, item.fields
                break
        if query is None:
            return [f"record {record_id!r} is not in {input_path}"]
    lines = []
    state = {"query": query, **fields} if query is not None else None
    branches: dict[str, bool] = {}
    for stage in program.stage_modules():
        sid = stage.spec.id
        if state is not None and _known_skip(stage, state, branches):
            branch = getattr(stage, "branch", None)
            why = f"branch {branch.name}: {branch.when.text}" if branch is not None and not branches[branch.name] \
                else f"when: {stage.when.text}"
            lines.append(f"[{sid}] skipped for this record ({why})")
            continue
        before = cache.get_explain(recipe.name, record_id, sid)
        now = program.stage_components(stage)
        if state is not None:
            key, now = program.stage_key(stage, state, now)
            hit = cache.get_stage(key, count=False)
        else:
            hit = None
        if before is None:
            lines.append(f"[{sid}] never computed for record {record_id!r} with recipe {recipe.name!r}")
            state = None
            continue
        changed = _diff_components(before, now)
        if hit is not None:
            lines.append(f"[{sid}] cache hit")
            state.update(hit["updates"])
            continue
        if state is None:
            changed = [c for c in changed if c != "upstream"] + ["upstream (an earlier stage changed)"]
        lines.append(f"[{sid}] miss: changed " + (", ".join(changed) if changed else "nothing in the key "
                     "(the entry was cleared or evicted)"))
        state = None
    return lines


def _diff_components(before: dict, now: dict) -> list[str]:
    changed = []
    for part in sorted(set(before) | set(now)):
        old, new = before.get(part), now.get(part)
        if part == "agents" and isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    changed.append(f"agent {name} (instructions, fields, demos, model or sampling)")
        elif old != new:
            label = {"spec": "stage spec (stop criteria, filters, agents list)", "policies": "policy text",
                     "kind": "stage kind/version", "upstream": "upstream content"}.get(part, part)
            changed.append(label)
    return changed
