"""Semantic diff of two recipes (after ``extends``).

:func:`diff_recipes` compares what changes the data: stages added, removed or
reordered, stage specs (stop criteria, filters, agents), agent roles (a text
diff of their instructions), models, the policy set and other settings. It
also says which stages' cached results recipe B cannot reuse from recipe A.
That part is computed from the real stage cache keys: both recipes are
compiled with models that never call anything
(:mod:`aidsafe.models._inspect`) and ``Program.stage_components`` is compared
stage by stage.

It returns a :class:`RecipeDiff`; :func:`render_recipe_diff` turns it into
text, ``to_dict()`` into JSON.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

from aidsafe._util.hashing import canonical_json
from aidsafe.config._specs import Recipe
from aidsafe.tools._diff_common import FieldChange
from aidsafe.tools._diff_common import short as _short

# ===================================================================== values


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list, tuple))


def diff_values(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Structural diff of two JSON-like values: mappings by key, lists of
    mappings item by item (aligned with difflib), anything else as a whole."""
    if isinstance(old, tuple):
        old = list(old)
    if isinstance(new, tuple):
        new = list(new)
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[FieldChange] = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = _join(path, key)
            if key not in new:
                out.append(FieldChange(sub, "removed", old=old[key]))
            elif key not in old:
                out.append(FieldChange(sub, "added", new=new[key]))
            else:
                out += diff_values(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and not all(map(_is_scalar, old + new)):
        return _diff_list(old, new, path)
    return [FieldChange(path, "changed", old=old, new=new)]


def _diff_list(old: list, new: list, path: str) -> list[FieldChange]:
    matcher = difflib.SequenceMatcher(a=[canonical_json(x) for x in old], b=[canonical_json(x) for x in new],
                                      autojunk=False)
    out: list[FieldChange] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            for offset in range(i2 - i1):
                out += diff_values(old[i1 + offset], new[j1 + offset], f"{path}[{j1 + offset}]")
            continue
        out += [FieldChange(f"{path}[{i}]", "removed", old=old[i]) for i in range(i1, i2)]
        out += [FieldChange(f"{path}[{j}]", "added", new=new[j]) for j in range(j1, j2)]
    return out


def text_diff(old: str, new: str, label: str = "") -> list[str]:
    """A compact unified diff (one line of context, no file header)."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=f"a/{label}", tofile=f"b/{label}",
                                 n=1, lineterm="")
    return [line for line in lines if not line.startswith(("--- ", "+++ "))]


# ==================================================================== recipes


@dataclass(frozen=True)
class StageEdit:
    """A stage present in both recipes whose spec differs (stop criteria,
    filters, agents, kind, options), as field changes of the stage mapping."""

    id: str
    kind: str
    fields: list[FieldChange]


@dataclass(frozen=True)
class AgentChange:
    """An agent role added, removed or changed. ``instructions_diff`` is a
    compact unified diff of the instructions the model sees (after an
    optimized ``prompts:`` file is applied); ``fields`` are the other
    changes of its YAML (model, inputs, outputs, sampling overrides)."""

    name: str
    change: str  # added | removed | changed
    instructions_diff: list[str] = field(default_factory=list)
    fields: list[FieldChange] = field(default_factory=list)
    demos: tuple[int, int] | None = None  # (A, B) demo counts when they differ
    used_by: list[str] = field(default_factory=list)  # stage ids (in B; in A for a removed agent)


@dataclass(frozen=True)
class ModelChange:
    """A model added, removed or changed. ``keyed`` says whether the change
    reaches cache keys (model identity or sampling parameters); a change of
    concurrency, rate limits, retries or timeouts does not."""

    name: str
    change: str
    fields: list[FieldChange] = field(default_factory=list)
    keyed: bool = True


@dataclass(frozen=True)
class PolicyChange:
    """One policy added, removed or changed (``fields``: which of name,
    statement, allowed, disallowed)."""

    id: str
    change: str
    fields: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PolicyDiff:
    """The policy sets of both recipes, compared by id."""

    ref_a: Any
    ref_b: Any
    name_a: str
    name_b: str
    source_a: str
    source_b: str
    hash_a: str
    hash_b: str
    changes: list[PolicyChange] = field(default_factory=list)
    order_changed: bool = False

    @property
    def changed(self) -> bool:
        """Whether the text the agents see differs (what stage keys use)."""
        return self.hash_a != self.hash_b


@dataclass(frozen=True)
class StageImpact:
    """What recipe B's stage ``id`` can reuse from recipe A's stage cache.

    ``status``:
    ``reused`` - same key components, same stages before it: A's cached
    results serve B;
    ``changed`` - its own key components differ (``reasons`` says which):
    directly changed;
    ``added`` - no such stage in A: directly changed;
    ``moved`` - same components, but it now runs after a different set of
    the stages both recipes share (reordering): directly changed;
    ``downstream`` - unchanged itself, but an earlier stage changed, was
    added, moved or removed, so its input (the record's upstream content)
    may differ: it reruns unless that input comes out identical (e.g. a
    lower ``max_rounds`` when deliberation agreed in round 1 anyway).
    """

    id: str
    kind: str
    status: str
    reasons: list[str] = field(default_factory=list)

    @property
    def invalidated(self) -> bool:
        return self.status != "reused"

    @property
    def direct(self) -> bool:
        return self.status in ("changed", "added", "moved")


@dataclass(frozen=True)
class RecipeDiff:
    """Everything that differs between recipes A and B (after ``extends``)."""

    a: str
    b: str
    name_a: str
    name_b: str
    hash_a: str
    hash_b: str
    order_a: list[str]
    order_b: list[str]
    stages_added: list[str]
    stages_removed: list[str]
    reordered: bool
    stage_edits: list[StageEdit]
    agents: list[AgentChange]
    models: list[ModelChange]
    policies: PolicyDiff
    settings: list[FieldChange]  # other top-level keys: name, description, input, output, adapter, ...
    impact: list[StageImpact]  # recipe B's stages, in order

    @property
    def same(self) -> bool:
        return not (self.stages_added or self.stages_removed or self.reordered or self.stage_edits or self.agents
                    or self.models or self.policies.changes or self.policies.changed or self.settings
                    or self.policies.ref_a != self.policies.ref_b or any(i.invalidated for i in self.impact))

    @property
    def directly_changed(self) -> list[str]:
        return [i.id for i in self.impact if i.direct]

    @property
    def downstream(self) -> list[str]:
        return [i.id for i in self.impact if i.status == "downstream"]

    @property
    def reused(self) -> list[str]:
        return [i.id for i in self.impact if i.status == "reused"]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["same"] = self.same
        data["policies"]["changed"] = self.policies.changed
        for item, impact in zip(data["impact"], self.impact):
            item["invalidated"] = impact.invalidated
            item["direct"] = impact.direct
        data["directly_changed"] = self.directly_changed
        data["downstream"] = self.downstream
        data["reused"] = self.reused
        return data


_SECTIONS = ("models", "agents", "stages", "policies")


def diff_recipes(a: Recipe, b: Recipe) -> RecipeDiff:
    """Compare two loaded recipes (``extends`` already resolved by
    :func:`aidsafe.config.load_recipe`). Calls no model."""
    from aidsafe.models._inspect import inspection_models
    from aidsafe.pipeline._compile import compile_recipe

    policies_a, policies_b = a.load_policies(), b.load_policies()
    program_a = compile_recipe(a, inspection_models(a), cache=None, policies=policies_a)
    program_b = compile_recipe(b, inspection_models(b), cache=None, policies=policies_b)

    order_a, order_b = [s.id for s in a.stages], [s.id for s in b.stages]
    common_in_a = [sid for sid in order_a if sid in order_b]
    common_in_b = [sid for sid in order_b if sid in order_a]

    stage_edits = []
    for sid in common_in_b:
        raw_a, raw_b = a.stage(sid).raw, b.stage(sid).raw
        fields = [c for c in diff_values(raw_a, raw_b) if c.path != "id"]
        if fields:
            stage_edits.append(StageEdit(sid, b.stage(sid).kind, fields))

    settings = diff_values({k: v for k, v in a.data.items() if k not in _SECTIONS},
                           {k: v for k, v in b.data.items() if k not in _SECTIONS})

    return RecipeDiff(
        a=_label(a), b=_label(b), name_a=a.name, name_b=b.name, hash_a=a.hash, hash_b=b.hash,
        order_a=order_a, order_b=order_b,
        stages_added=[sid for sid in order_b if sid not in order_a],
        stages_removed=[sid for sid in order_a if sid not in order_b],
        reordered=common_in_a != common_in_b,
        stage_edits=stage_edits,
        agents=_agent_changes(a, b, program_a, program_b),
        models=_model_changes(a, b, program_a, program_b),
        policies=_policy_diff(a, b, policies_a, policies_b),
        settings=settings,
        impact=_impact(program_a, program_b),
    )


def _label(recipe: Recipe) -> str:
    return recipe.located.file or str(recipe.path)


def _agent_views(program) -> dict[str, Any]:
    """The first compiled Agent of each role (its effective instructions and demos)."""
    views = {}
    for stage in program.stage_modules():
        for agent in stage.agent_modules():
            views.setdefault(agent.spec.name, agent)
    return views


def _used_by(recipe: Recipe, name: str) -> list[str]:
    return [s.id for s in recipe.stages if name in s.agent_names()]


def _agent_changes(a: Recipe, b: Recipe, program_a, program_b) -> list[AgentChange]:
    views_a, views_b = _agent_views(program_a), _agent_views(program_b)
    out = []
    for name in list(a.agents) + [n for n in b.agents if n not in a.agents]:
        if name not in b.agents:
            out.append(AgentChange(name, "removed", used_by=_used_by(a, name)))
            continue
        if name not in a.agents:
            out.append(AgentChange(name, "added", used_by=_used_by(b, name)))
            continue
        view_a, view_b = views_a.get(name), views_b.get(name)
        text_a = view_a.predict.signature.instructions if view_a else a.agents[name].instructions
        text_b = view_b.predict.signature.instructions if view_b else b.agents[name].instructions
        instructions = text_diff(text_a, text_b, name) if text_a != text_b else []
        raw_a = {k: v for k, v in a.data["agents"][name].items() if k != "instructions"}
        raw_b = {k: v for k, v in b.data["agents"][name].items() if k != "instructions"}
        fields = diff_values(raw_a, raw_b)
        demos_a = len(view_a.predict.demos) if view_a else 0
        demos_b = len(view_b.predict.demos) if view_b else 0
        demos = (demos_a, demos_b) if demos_a != demos_b else None
        if instructions or fields or demos:
            out.append(AgentChange(name, "changed", instructions, fields, demos, _used_by(b, name)))
    return out


def _model_changes(a: Recipe, b: Recipe, program_a, program_b) -> list[ModelChange]:
    out = []
    for name in list(a.models) + [n for n in b.models if n not in a.models]:
        if name not in b.models:
            out.append(ModelChange(name, "removed"))
        elif name not in a.models:
            out.append(ModelChange(name, "added"))
        else:
            fields = diff_values(a.data["models"][name], b.data["models"][name])
            if fields:
                ha, hb = program_a.models[name], program_b.models[name]
                keyed = ha.identity != hb.identity or ha.spec.params != hb.spec.params
                out.append(ModelChange(name, "changed", fields, keyed))
    return out


def _policy_diff(a: Recipe, b: Recipe, set_a, set_b) -> PolicyDiff:
    by_a = {p.id: p for p in set_a.policies}
    by_b = {p.id: p for p in set_b.policies}
    changes = []
    for pid in list(by_a) + [p for p in by_b if p not in by_a]:
        if pid not in by_b:
            changes.append(PolicyChange(pid, "removed"))
        elif pid not in by_a:
            changes.append(PolicyChange(pid, "added"))
        else:
            fields = [f for f in ("name", "statement", "allowed", "disallowed")
                      if getattr(by_a[pid], f) != getattr(by_b[pid], f)]
            if fields:
                changes.append(PolicyChange(pid, "changed", fields))
    common_a = [p for p in by_a if p in by_b]
    common_b = [p for p in by_b if p in by_a]
    return PolicyDiff(ref_a=a.data.get("policies"), ref_b=b.data.get("policies"), name_a=set_a.name,
                      name_b=set_b.name, source_a=set_a.source, source_b=set_b.source, hash_a=set_a.hash,
                      hash_b=set_b.hash, changes=changes, order_changed=common_a != common_b)


def _impact(program_a, program_b) -> list[StageImpact]:
    """Walk B's stages in order. A stage's result is reused from A only when
    its key components (``Program.stage_components``: kind and version, spec,
    agents with their models, policy text if read, adapter) equal A's and
    every stage before it was reused, in the same order: the key also covers
    the record's upstream content, which only those stages write."""
    stages_a = {s.spec.id: s for s in program_a.stage_modules()}
    order_a = list(program_a.stage_ids)
    order_b = list(program_b.stage_ids)
    out: list[StageImpact] = []
    first_break: str | None = None
    for position, stage in enumerate(program_b.stage_modules()):
        sid = stage.spec.id
        if sid not in stages_a:
            out.append(StageImpact(sid, stage.kind, "added", ["not in A"]))
            first_break = first_break or f"stage {sid} added"
            continue
        comp_a = program_a.stage_components(stages_a[sid])
        comp_b = program_b.stage_components(stage)
        before_a, before_b = order_a[: order_a.index(sid)], order_b[:position]
        removed = [x for x in before_a if x not in order_b]
        # Moved: it now runs after a different set of the common stages
        # (swapping two earlier stages moves neither of the later ones).
        if {x for x in before_a if x in order_b} != {x for x in before_b if x in order_a}:
            upstream, status = f"runs after [{', '.join(before_b)}], was after [{', '.join(before_a)}]", "moved"
        elif removed:
            upstream, status = f"after removed stage{'s' * (len(removed) > 1)} {', '.join(removed)}", "downstream"
        elif first_break:
            upstream, status = f"after {first_break}", "downstream"
        else:
            upstream, status = None, "reused"
        if comp_a != comp_b:
            reasons = _component_reasons(stages_a[sid], stage, comp_a, comp_b, program_a, program_b)
            out.append(StageImpact(sid, stage.kind, "changed", reasons + ([f"also {upstream}"] if upstream else [])))
            first_break = first_break or f"stage {sid}"
        elif upstream:
            out.append(StageImpact(sid, stage.kind, status, [upstream]))
            if not first_break:
                first_break = (f"stage {sid} moved" if status == "moved"
                               else f"stage{'s' * (len(removed) > 1)} {', '.join(removed)} removed")
        else:
            out.append(StageImpact(sid, stage.kind, "reused"))
    return out


def _component_reasons(stage_a, stage_b, comp_a, comp_b, program_a, program_b) -> list[str]:
    """Name the key components that differ, with the detail that explains each."""
    reasons = []
    if comp_a["kind"] != comp_b["kind"]:
        reasons.append(f"kind {comp_a['kind']} -> {comp_b['kind']}")
    if comp_a["spec"] != comp_b["spec"]:
        paths = [c.path for c in diff_values(stage_a.spec.raw, stage_b.spec.raw) if c.path != "id"]
        reasons.append(f"stage spec ({', '.join(paths)})" if paths else "stage spec")
    agents_a, agents_b = comp_a["agents"], comp_b["agents"]
    views_a = {a.spec.name: a for a in stage_a.agent_modules()}
    views_b = {a.spec.name: a for a in stage_b.agent_modules()}
    for name in list(agents_a) + [n for n in agents_b if n not in agents_a]:
        if name not in agents_b:
            reasons.append(f"agent {name} removed from the stage")
        elif name not in agents_a:
            reasons.append(f"agent {name} added to the stage")
        elif agents_a[name] != agents_b[name]:
            parts = _agent_key_parts(views_a[name], views_b[name], program_a, program_b)
            reasons.append(f"agent {name} ({', '.join(parts)})" if parts else f"agent {name}")
    if comp_a["policies"] != comp_b["policies"]:
        if comp_a["policies"] is None:
            reasons.append("now reads the policies")
        elif comp_b["policies"] is None:
            reasons.append("no longer reads the policies")
        else:
            reasons.append("policy text")
    if comp_a["adapter"] != comp_b["adapter"]:
        reasons.append(f"adapter {comp_a['adapter']} -> {comp_b['adapter']}")
    for key in comp_b:
        # A component added to stage keys later still shows up, by name.
        if key not in ("kind", "spec", "agents", "policies", "adapter") and comp_a.get(key) != comp_b.get(key):
            reasons.append(key)
    return reasons


def _agent_key_parts(agent_a, agent_b, program_a, program_b) -> list[str]:
    fa, fb = agent_a.fingerprint(), agent_b.fingerprint()
    parts = [key for key in fb if fa.get(key) != fb.get(key)]
    ha, hb = program_a.models[agent_a.spec.model], program_b.models[agent_b.spec.model]
    if agent_a.spec.model != agent_b.spec.model:
        parts.append(f"model {agent_a.spec.model} -> {agent_b.spec.model}")
    elif ha.identity != hb.identity:
        parts.append(f"model {agent_b.spec.model} identity")
    if ha.spec.params != hb.spec.params and agent_a.spec.model == agent_b.spec.model:
        parts.append(f"model {agent_b.spec.model} sampling")
    return parts


def render_recipe_diff(diff: RecipeDiff) -> str:
    """Human-readable text of a :class:`RecipeDiff`."""
    lines = [f"recipe diff: A = {diff.a} ({diff.name_a})", f"             B = {diff.b} ({diff.name_b})"]
    if diff.same:
        lines.append("no differences (stage caches fully reusable)")
        return "\n".join(lines)

    if diff.settings:
        lines.append("")
        lines.append("settings:")
        lines += [f"  {c.text()}" for c in diff.settings]

    lines.append("")
    if diff.stages_added or diff.stages_removed or diff.reordered:
        lines.append("stages:")
        lines.append(f"  A: {' -> '.join(diff.order_a)}")
        lines.append(f"  B: {' -> '.join(diff.order_b)}")
        lines += [f"  + {sid} (added)" for sid in diff.stages_added]
        lines += [f"  - {sid} (removed)" for sid in diff.stages_removed]
        if diff.reordered:
            lines.append("  ~ order of common stages changed")
    else:
        lines.append(f"stages: same list and order ({', '.join(diff.order_b)})")
    for edit in diff.stage_edits:
        lines.append(f"  stage {edit.id} ({edit.kind}):")
        lines += [f"    {c.text()}" for c in edit.fields]

    if diff.agents:
        lines.append("")
        lines.append("agents:")
        for agent in diff.agents:
            where = f" (used by {', '.join(agent.used_by)})" if agent.used_by else " (used by no stage)"
            lines.append(f"  {'+' if agent.change == 'added' else '-' if agent.change == 'removed' else '~'} "
                         f"{agent.name}: {agent.change}{where}")
            lines += [f"    {c.text()}" for c in agent.fields]
            if agent.demos:
                lines.append(f"    demos: {agent.demos[0]} -> {agent.demos[1]}")
            if agent.instructions_diff:
                lines.append("    instructions:")
                lines += [f"      {line}" for line in agent.instructions_diff]

    if diff.models:
        lines.append("")
        lines.append("models:")
        for model in diff.models:
            note = "" if model.keyed or model.change != "changed" else " (operational only: cache keys unchanged)"
            lines.append(f"  {model.name}: {model.change}{note}")
            lines += [f"    {c.text()}" for c in model.fields]

    p = diff.policies
    if p.changed or p.changes or p.ref_a != p.ref_b:
        lines.append("")
        lines.append(f"policies: {p.name_a} ({p.source_a}) -> {p.name_b} ({p.source_b})")
        if p.ref_a != p.ref_b:
            lines.append(f"  reference: {_short(p.ref_a)} -> {_short(p.ref_b)}")
        for change in p.changes:
            mark = {"added": "+", "removed": "-"}.get(change.change, "~")
            detail = f" ({', '.join(change.fields)})" if change.fields else ""
            lines.append(f"  {mark} {change.id}: {change.change}{detail}")
        if p.order_changed:
            lines.append("  ~ order of policies changed (the numbering agents see changes)")
        if p.changed:
            lines.append(f"  policy text hash {p.hash_a[:12]} -> {p.hash_b[:12]}")
        else:
            lines.append("  policy text unchanged (same hash)")

    lines.append("")
    lines.append("stage cache (what B can reuse from A's stage results):")
    width = max([len(i.id) for i in diff.impact] + [len(sid) for sid in diff.stages_removed] + [5])
    labels = {"reused": "reused", "changed": "rerun (directly changed)", "added": "run (new stage)",
              "moved": "rerun (moved)", "downstream": "rerun (downstream)"}
    for impact in diff.impact:
        why = f": {'; '.join(impact.reasons)}" if impact.reasons and impact.status != "added" else ""
        lines.append(f"  {impact.id:<{width}}  {labels.get(impact.status, impact.status)}{why}")
    for sid in diff.stages_removed:
        lines.append(f"  {sid:<{width}}  removed (A's entries are no longer used)")
    return "\n".join(lines)



__all__ = ["AgentChange", "ModelChange", "PolicyChange", "PolicyDiff", "RecipeDiff", "StageEdit", "StageImpact",
           "diff_recipes", "diff_values", "render_recipe_diff", "text_diff"]
