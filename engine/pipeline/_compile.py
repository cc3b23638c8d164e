"""Recipe -> ``dspy.Module`` tree.

:class:`Program` holds one module per stage (each a thin ``dspy.Module`` that
wires its agents). ``forward(query=...)`` runs the pipeline like any DSPy
program, so DSPy's optimizers can tune it; :meth:`Program.run_record` runs one
record with the stage-level cache and returns the full record state.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import dspy

from aidsafe._util import progress
from aidsafe._util.hashing import sha256_of
from aidsafe.config._policies import PolicySet
from aidsafe.config._specs import Recipe
from aidsafe.models._engine import ModelHandle, UsageMeter, metering
from aidsafe.pipeline._agents import CURRENT_RECORD, Agent, make_adapter
from aidsafe.pipeline._contract import RECORD_FIELDS, wrong_types
from aidsafe.pipeline.stages import STAGES, Stage, StageContext
from aidsafe.pipeline.stages._base import dataflow
from aidsafe.store._cache import Cache

# Bumped when the prompt an unchanged recipe sends changes (2: the policy text
# opens the system message; 3: the answer-format reminder closes the system
# message instead of the last user message), so cached stage results of the
# old prompts are not served for the new ones.
STAGE_KEY_VERSION = 3


class NotCached(Exception):
    """``run_record(cache_only=True)`` reached a stage whose result is not in the cache."""


@dataclass
class RecordRun:
    """The outcome of one record through the pipeline."""

    state: dict
    stage_info: dict = field(default_factory=dict)  # stage id -> {cached, seconds, usage}
    filtered: str | None = None
    usage: UsageMeter = field(default_factory=UsageMeter)
    skipped: list = field(default_factory=list)  # [{stage, when, branch?}]: stages whose `when:` or branch was false


class Program(dspy.Module):
    """A compiled recipe.

    Stages are plain objects that wire agents; the program owns every agent
    (``self.agents``, keyed ``"<stage id>.<agent>"``), so DSPy's optimizers,
    ``named_predictors()`` and ``save``/``load`` see each predictor once.
    """

    def __init__(self, recipe: Recipe, models: dict[str, ModelHandle], policies: PolicySet,
                 cache: Cache | None = None, prompts: dict | None = None):
        super().__init__()
        self.recipe = recipe
        self.models = models
        self.policies = policies
        self.cache = cache
        self.stage_ids: list[str] = []
        self.stages: dict[str, Stage] = {}
        self.agents: dict[str, Agent] = {}
        self._components: dict[str, dict] = {}
        self._demo_texts: tuple[str, ...] | None = None  # memo of demo_texts; reset_keys forgets it
        flows = dataflow([s.raw for s in recipe.stages], recipe.data.get("agents", {}), recipe.input.record_fields())
        # what each stage declares it writes: a cached result is checked against it
        self._writes = {spec.id: {**RECORD_FIELDS, **flow.writes} for spec, flow in zip(recipe.stages, flows)}
        for spec, flow in zip(recipe.stages, flows):
            kind = STAGES.get(spec.kind)
            agents = {}
            for name in spec.agent_names():
                agent_spec = recipe.agents[name]
                # the stage's own contract (a predict stage's depends on its agent and the fields before it)
                agents[name] = Agent(agent_spec, flow.contract, models[agent_spec.model].lm,
                                     recipe.max_parse_retries, recipe.prompt_layout)
            built = kind(spec, agents)
            self.stages[spec.id] = built
            for agent in built.agent_modules():
                key = f"{spec.id}.{agent.spec.name}"
                while key in self.agents and self.agents[key] is not agent:  # one agent in two role slots
                    key += "'"
                self.agents[key] = agent
            self.stage_ids.append(spec.id)
        self._attach_precedents(cache)
        self.adapter = make_adapter(recipe.adapter, recipe.prompt_layout)
        self.policy_terms = tuple(t for p in policies.policies for t in (p.id, p.name))
        if prompts:
            from aidsafe.config._prompts import apply_prompts

            apply_prompts(self, prompts)
            self.reset_keys()

    def _attach_precedents(self, cache: Cache | None) -> None:
        """Agents whose recipe says ``demos: {select: nearest, ...}`` get
        the nearest labeled precedents of each record's query as demos: one
        pool per (file, embedder, k), its embeddings in the run's cache."""
        from aidsafe.config._prompts import precedent_pool_path
        from aidsafe.models._embed import build_embedder
        from aidsafe.pipeline._nearest import NearestPool

        pools: dict[tuple, NearestPool] = {}
        for agent in self.agents.values():
            config = agent.spec.demos
            if not config or config.get("select") != "nearest":
                continue
            path = precedent_pool_path(self.recipe, agent.spec.name)
            embedder_name = config.get("embedder", "lexical")
            k = config.get("k", DEFAULT_PRECEDENTS)
            key = (str(path), embedder_name, k)
            if key not in pools:
                # the built model's spec: `--model embed=...` and --api-base apply to the embedder too
                spec = self.models[embedder_name].spec if embedder_name in self.models else embedder_name
                embedder = build_embedder(spec, cache if cache is not None and cache.enabled else None)
                outputs = tuple(name for name in agent.spec.outputs if name in agent.contract.outputs) or ("decision",)
                pools[key] = NearestPool(path, embedder, k, required=outputs)
            agent.nearest = pools[key]

    def stage_modules(self) -> list[Stage]:
        """The stages in pipeline order."""
        return [self.stages[sid] for sid in self.stage_ids]

    # -------------------------------------------------------------- keys
    def stage_components(self, stage: Stage) -> dict:
        """The parts of a stage's cache key other than the record's state, as
        separate hashes so `aidsafe cache explain` can say which one changed."""
        if stage.spec.id not in self._components:
            self._components[stage.spec.id] = self._compute_components(stage)
        return self._components[stage.spec.id]

    def reset_keys(self) -> None:
        """Forget memoized key parts (after changing agents' instructions or demos)."""
        self._components = {}
        self._demo_texts = None

    @property
    def demo_texts(self) -> tuple[str, ...]:
        """Every string the agents' demos give as an answer (their output
        fields' values, list items included), for the ``demo_echo`` filter."""
        if self._demo_texts is None:
            texts: dict[str, None] = {}  # ordered, each text once
            for agent in self.agents.values():
                for demo in agent.predict.demos:
                    for name in agent.output_names:
                        value = dict(demo).get(name)
                        for item in value if isinstance(value, list) else [value]:
                            if isinstance(item, str) and item.strip():
                                texts[item] = None
            self._demo_texts = tuple(texts)
        return self._demo_texts

    def _compute_components(self, stage: Stage) -> dict:
        agents = {}
        sees_policies = False
        for agent in stage.agent_modules():
            handle = self.models[agent.spec.model]
            agents[agent.spec.name] = sha256_of({"agent": agent.fingerprint(), "model": handle.identity,
                                                 "params": handle.spec.params})
            sees_policies |= "policies" in agent.input_names
        return {
            "kind": f"{stage.kind}@v{stage.version}",
            # `when:`/`where:` decide whether a stage runs or a record is kept, not what the stage writes
            "spec": sha256_of({k: v for k, v in stage.spec.raw.items() if k not in ("when", "where", "branch")}),
            "agents": agents,
            "policies": self.policies.hash if sees_policies else None,
            "adapter": self.recipe.adapter,
            # a demo_echo filter reads every agent's demos, not only this stage's
            **({"demos": sha256_of(list(self.demo_texts))} if _uses_filter(stage, "demo_echo") else {}),
        }

    def stage_key(self, stage: Stage, state: dict, components: dict | None = None) -> tuple[str, dict]:
        components = dict(components or self.stage_components(stage))
        components["upstream"] = sha256_of(state)
        return sha256_of({"v": STAGE_KEY_VERSION, **components}), components

    # ---------------------------------------------------------------- run
    def run_record(self, query: str, record_id: str | None = None, use_stage_cache: bool = True,
                   cache_only: bool = False, fields: dict | None = None) -> RecordRun:
        """Run every stage on one query; stage results come from the cache
        when their key matches. ``fields``: the record fields the input gives
        (its columns and label; part of every stage's key). ``cache_only``:
        raise :class:`NotCached` at the first stage that would have to run
        (nothing is computed)."""
        state: dict[str, Any] = {"query": query, **(fields or {})}
        run = RecordRun(state=state)
        cache = self.cache if use_stage_cache else None
        if cache_only and (cache is None or not cache.enabled):
            raise NotCached(query)
        with metering(run.usage), dspy.context(adapter=self.adapter):
            branches: dict[str, bool] = {}  # branch name -> whether its condition held on entering it
            for stage in self.stage_modules():
                # getattr: a plugin kind whose __init__ skips Stage's has no conditions
                when, where = getattr(stage, "when", None), getattr(stage, "where", None)
                branch = getattr(stage, "branch", None)
                if branch is not None:
                    if branch.name not in branches:
                        branches[branch.name] = branch.when.holds(state)
                    if not branches[branch.name]:
                        run.skipped.append({"stage": stage.spec.id, "branch": branch.name, "when": branch.when.text})
                        continue
                if when is not None and not when.holds(state):
                    run.skipped.append({"stage": stage.spec.id, "when": when.text})
                    continue
                key = components = hit = None
                if cache is not None:
                    key, components = self.stage_key(stage, state)
                    hit = cache.get_stage(key, count=not cache_only)
                    problem = hit is not None and wrong_types(hit["updates"], self._writes.get(stage.spec.id, {}))
                    if problem:
                        cache.drop_stage(key, f"stage {stage.spec.id}: {problem}")
                        hit = None
                if hit is None and cache_only:
                    raise NotCached(stage.spec.id)
                if hit is not None:
                    updates, filtered, seconds, usage = hit["updates"], hit.get("filtered"), hit["seconds"], hit["usage"]
                    runtime = hit.get("runtime") or {}
                    cached = True
                else:
                    meter = UsageMeter()
                    started = time.perf_counter()
                    shown = CURRENT_RECORD.set(state)  # agents pick the demos whose `when:` holds for it
                    label = f"record {record_id}: stage {stage.spec.id}" if record_id is not None else f"stage {stage.spec.id}"
                    try:
                        with metering(meter), progress.working(label):
                            result = stage(copy.deepcopy(state), StageContext(
                                policies=self.policies.text, tokens_used=lambda m=meter: m.total().tokens,
                                policy_terms=self.policy_terms, demo_texts=self.demo_texts))
                    except Exception as exc:
                        exc.stage_id = stage.spec.id  # the output record names the failing stage
                        raise
                    finally:
                        CURRENT_RECORD.reset(shown)
                    seconds = round(time.perf_counter() - started, 3)
                    updates, filtered, usage = result.updates, result.filtered, meter.to_dict()
                    # how the models that answered ran (threads, poll): kept
                    # with the result, so a warm rerun reports the same
                    runtime = dict(sorted(meter.runtime.items()))
                    cached = False
                    if cache is not None:
                        cache.put_stage(key, {"updates": updates, "filtered": filtered, "seconds": seconds,
                                              "usage": usage, **({"runtime": runtime} if runtime else {})},
                                        stage.spec.id)
                if cache is not None and record_id is not None and (
                        not cached or cache.get_explain(self.recipe.name, record_id, stage.spec.id) != components):
                    # A read is cheaper than a write: rewrite the index only when it changed.
                    cache.put_explain(self.recipe.name, record_id, stage.spec.id, components)
                state.update(copy.deepcopy(updates))
                run.stage_info[stage.spec.id] = {"cached": cached, "seconds": seconds, "usage": usage, "runtime": runtime}
                if filtered:
                    run.filtered = f"stage {stage.spec.id}: {filtered}"
                    break
                if where is not None and not where.holds(state):
                    run.filtered = f"stage {stage.spec.id}: where {where.text!r} is false ({where.explain(state)})"
                    break
        if cache_only and cache is not None:
            cache.count_stage_hits(len(run.stage_info))  # counted here: the reads above did not
        return run

    def forward(self, query: str, **fields: Any) -> dspy.Prediction:
        """Run the pipeline on one query (no stage cache: for optimizers and
        ad-hoc use); ``fields`` are the input's columns and label. Returns
        intents, cot, response and the deliberation."""
        run = self.run_record(query, use_stage_cache=False, fields=fields)
        s = run.state
        return dspy.Prediction(query=query, intents=s.get("intents", []), cot=s.get("thoughts", []),
                               response=s.get("response", ""), deliberation=s.get("deliberation"),
                               filtered=run.filtered)


def compile_recipe(recipe: Recipe, models: dict[str, ModelHandle], cache: Cache | None = None,
                   policies: PolicySet | None = None) -> Program:
    """Build the :class:`Program` for a loaded recipe."""
    policies = policies or recipe.load_policies()
    prompts = None
    if recipe.prompts:
        from aidsafe.config._prompts import load_prompts

        prompts = load_prompts(recipe)
    return Program(recipe, models, policies, cache=cache, prompts=prompts)


DEFAULT_PRECEDENTS = 6


def _uses_filter(stage: Stage, kind: str) -> bool:
    return any(f.get("type") == kind for group in stage.spec.filters.values() for f in group)
