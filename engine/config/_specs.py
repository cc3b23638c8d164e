"""The plain spec dataclasses a recipe loads into. A leaf module: loaders,
stage kinds and models import it; it imports nothing of theirs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aidsafe._util.errors import UserError
from aidsafe._util.hashing import sha256_of
from aidsafe._util.registry import suggest
from aidsafe.config._yaml import Located

FIELD_TYPES = ("str", "list[str]", "bool", "int", "float", "dict")



@dataclass(frozen=True)
class FieldSpec:
    """One input or output field of an agent's signature."""

    name: str
    type: str = "str"
    desc: str = ""
    enum: tuple[str, ...] = ()  # the allowed values of a str field (the answer must be one of them)

    @classmethod
    def from_yaml(cls, name: str, value: "str | dict") -> "FieldSpec":
        """A field as a recipe declares it: a description string, or
        ``{type, desc, enum}``."""
        if isinstance(value, str):
            return cls(name, "str", value)
        return cls(name, value.get("type") or ("str" if value.get("enum") else ""), value.get("desc", ""),
                   tuple(value.get("enum") or ()))


@dataclass(frozen=True)
class ModelSpec:
    """A named model from the recipe's ``models:`` section."""

    name: str
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    params: dict = field(default_factory=dict)  # temperature, top_p, max_tokens, seed
    concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    num_retries: int | None = None
    timeout: float | None = None
    threads: int | str | None = None  # a number, or "auto" (None: auto)
    poll: int | None = None
    context: int | None = None
    repeat_penalty: float | None = None
    prompt_cache_mib: int | None = None

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "ModelSpec":
        params = {k: data[k] for k in ("temperature", "top_p", "max_tokens", "seed") if k in data}
        return cls(name=name, model=data["model"], api_base=data.get("api_base"), api_key_env=data.get("api_key_env"),
                   params=params, concurrency=data.get("concurrency"), rpm=data.get("rpm"), tpm=data.get("tpm"),
                   num_retries=data.get("num_retries"),
                   timeout=data.get("timeout"), threads=data.get("threads"), poll=data.get("poll"), context=data.get("context"),
                   repeat_penalty=data.get("repeat_penalty"), prompt_cache_mib=data.get("prompt_cache_mib"))


@dataclass(frozen=True)
class AgentSpec:
    """An agent role: instructions, model, and the fields it reads and writes."""

    name: str
    instructions: str
    model: str
    inputs: tuple[str, ...] | None
    outputs: dict  # name -> FieldSpec (descriptions/extra fields declared in YAML)
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage as declared (after ``extends``)."""

    id: str
    kind: str
    agent: str | None
    agents: tuple[str, ...]
    raw: dict
    index: int
    # agents named elsewhere in the stage (role slots such as ``judge: NAME``,
    # gate checks); which keys name agents is the kind's knowledge
    # (``Stage.agent_refs``), resolved by the loader
    slot_agents: tuple[str, ...] = ()

    @property
    def stop(self) -> dict:
        return self.raw.get("stop", {})

    @property
    def filters(self) -> dict:
        """``{"before": [...], "after": [...]}`` whatever form the YAML used."""
        value = self.raw.get("filters")
        if value is None:
            return {"before": [], "after": []}
        if isinstance(value, list):
            return {"before": [], "after": value}
        return {"before": value.get("before", []), "after": value.get("after", [])}

    def agent_names(self) -> list[str]:
        """Every agent the stage uses: ``agent``, ``agents`` and role slots."""
        return ([self.agent] if self.agent else []) + list(self.agents) + list(self.slot_agents)


@dataclass
class Recipe:
    """A loaded, validated recipe."""

    name: str
    path: Path
    data: dict  # resolved (after extends)
    located: Located
    chain: list[str]
    models: dict[str, ModelSpec]
    agents: dict[str, AgentSpec]
    stages: list[StageSpec]
    policy_ref: str
    policy_include: list[str] | None
    input_field: str
    id_field: str | None
    keep_fields: list[str]
    adapter: str
    max_parse_retries: int
    prompts: str | None
    output: dict
    prompt_layout: str = "stable_first"
    inline_policies: list | None = None  # `policies: [...]` written in the recipe itself

    @property
    def hash(self) -> str:
        return sha256_of(self.data)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def load_policies(self):
        """Load the policy set the recipe names (relative to its folder), or
        the one it writes inline."""
        from aidsafe.config._policies import inline_policy_set, load_policy_set

        if self.inline_policies is not None:
            return inline_policy_set(self.inline_policies, str(self.path))
        return load_policy_set(self.policy_ref, self.base_dir, self.policy_include)

    def stage(self, stage_id: str) -> StageSpec:
        for spec in self.stages:
            if spec.id == stage_id:
                return spec
        raise UserError(f"no stage {stage_id!r} in recipe {self.name}{suggest(stage_id, [s.id for s in self.stages])}")
