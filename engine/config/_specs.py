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
    # "input" for a field read from the input row (`input.columns`, `input.label`): every stage's
    # agents may read it, not only those of kinds that offer it
    source: str = ""

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
    # local models: ``{ngram: ...}`` or ``{draft: ...}`` as written (aidsafe.models.local._speculative)
    speculative: dict | None = None

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "ModelSpec":
        params = {k: data[k] for k in ("temperature", "top_p", "max_tokens", "seed") if k in data}
        return cls(name=name, model=data["model"], api_base=data.get("api_base"), api_key_env=data.get("api_key_env"),
                   params=params, concurrency=data.get("concurrency"), rpm=data.get("rpm"), tpm=data.get("tpm"),
                   num_retries=data.get("num_retries"),
                   timeout=data.get("timeout"), threads=data.get("threads"), poll=data.get("poll"), context=data.get("context"),
                   repeat_penalty=data.get("repeat_penalty"), prompt_cache_mib=data.get("prompt_cache_mib"),
                   speculative=data.get("speculative"))


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
    demos: dict | None = None  # `demos: {select: nearest, k, pool, embedder}`: per-record precedents


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


DECISIONS = ("answer", "decline")
LABELS = (*DECISIONS, "unknown")
# How an input's label column reads, lower-cased: the spellings of the public
# safety sets (XSTest `label: safe|unsafe`, BeaverTails `is_safe`, compliance
# datasets' comply/refuse) and the labels themselves.
LABEL_SPELLINGS = {
    **dict.fromkeys(("answer", "comply", "compliance", "complied", "allowed", "allow", "safe", "benign",
                     "harmless", "ok"), "answer"),
    **dict.fromkeys(("decline", "refuse", "refusal", "refused", "unsafe", "harmful", "not_allowed",
                     "disallowed", "forbidden"), "decline"),
    **dict.fromkeys(("unknown", "none", "null", "n/a", "na", "?"), "unknown"),
}
# A true/false label column is read by its name: `is_safe: true` means answer.
_BOOL_COLUMNS = {**dict.fromkeys(("is_safe", "safe", "benign", "is_benign"), "answer"),
                 **dict.fromkeys(("is_unsafe", "unsafe", "is_harmful", "harmful"), "decline")}


@dataclass(frozen=True)
class LabelSpec:
    """``input.label``: the column holding each row's expected behaviour and
    how its values map to ``answer`` / ``decline`` / ``unknown``. ``column``
    None: every row gets ``default`` (a set that is all harmful)."""

    column: str | None = "label"
    values: dict = field(default_factory=dict)  # lower-cased value -> label, over LABEL_SPELLINGS
    default: str = "unknown"  # a row without the column, or with an empty value

    def value_map(self) -> dict:
        """Every accepted spelling (lower case) -> label."""
        mapping = dict(LABEL_SPELLINGS)
        if self.column and self.column.lower() in _BOOL_COLUMNS:
            yes = _BOOL_COLUMNS[self.column.lower()]
            mapping.update({"true": yes, "1": yes, "false": "decline" if yes == "answer" else "answer",
                            "0": "decline" if yes == "answer" else "answer"})
        mapping.update(self.values)
        return mapping

    def read(self, row: dict) -> tuple[str, str | None]:
        """The row's label, or ``(default, why)`` when its value maps to no label."""
        if self.column is None or row.get(self.column) is None:
            return self.default, None
        value = row[self.column]
        text = (str(value).lower() if isinstance(value, bool) else str(value)).strip().lower()
        if not text:
            return self.default, None
        mapping = self.value_map()
        if text in mapping:
            return mapping[text], None
        return self.default, (f"label column {self.column!r} holds {value!r}, which maps to no label; map it "
                              f"under `input: {{label: {{column: {self.column}, values: {{{text}: answer}}}}}}` "
                              f"(labels: {', '.join(LABELS)})")


@dataclass(frozen=True)
class InputSpec:
    """``input:``: which column is the prompt, which the id, the columns the
    stages read as record fields (``columns``: record field -> input column),
    the label, and the columns only copied into ``meta`` (``keep``)."""

    prompt_field: str = "prompt"
    id_field: str | None = "id"
    keep: tuple[str, ...] = ()
    columns: dict = field(default_factory=dict)  # record field name -> input column
    label: LabelSpec | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> "InputSpec":
        """The spec of a validated ``input:`` mapping."""
        data = data or {}
        columns = data.get("columns") or {}
        if isinstance(columns, list):
            columns = {name: name for name in columns}
        label = data.get("label")
        if isinstance(label, str):
            label = LabelSpec(column=label)
        elif isinstance(label, dict):
            values = {str(k).lower(): v for k, v in (label.get("values") or {}).items()}
            column = label.get("column", None if "default" in label and "column" not in label else "label")
            label = LabelSpec(column=column, values=values, default=label.get("default", "unknown"))
        return cls(prompt_field=data.get("field", "prompt"), id_field=data.get("id_field", "id"),
                   keep=tuple(data.get("keep") or ()), columns=dict(columns), label=label)

    def record_fields(self) -> dict[str, FieldSpec]:
        """The record fields the input gives every stage (name -> FieldSpec)."""
        out = {name: FieldSpec(name, "", f"The input's {column!r} column.", source="input")
               for name, column in self.columns.items()}
        if self.label is not None:
            out["label"] = FieldSpec("label", "str", "The expected behaviour from the input's label: answer "
                                     "(a harmless request to answer fully), decline, or unknown.", LABELS,
                                     source="input")
        return out

    def read(self, row: dict) -> tuple[dict, str | None]:
        """The record fields of one input row, or why the row is unusable."""
        values: dict = {}
        missing = [column for column in self.columns.values() if row.get(column) is None]
        if missing:
            known = ", ".join(map(str, row)) or "(none)"
            return {}, (f"no column {', '.join(map(repr, missing))} (columns: {known}); every row needs the "
                        "columns named in `input.columns`; fix the row or remove the column from the recipe")
        for name, column in self.columns.items():
            values[name] = row[column]
        if self.label is not None:
            values["label"], problem = self.label.read(row)
            if problem:
                return {}, problem
        return values, None


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
    input: InputSpec = field(default_factory=InputSpec)
    warnings: list = field(default_factory=list)  # what `validate` says without refusing the recipe
    _hash: str | None = field(default=None, repr=False, compare=False)

    @property
    def hash(self) -> str:
        """sha256 of the resolved recipe and of the files it reads besides
        policies (its ``prompts.json``, its precedent pools): a rerun whose
        demos or pool changed recomputes rather than resumes old records."""
        if self._hash is None:
            files = self._data_files()
            self._hash = sha256_of({"recipe": self.data, "files": files}) if files else sha256_of(self.data)
        return self._hash

    def _data_files(self) -> dict:
        import hashlib

        found = {}
        if self.prompts:
            from aidsafe.config._prompts import prompts_path

            try:
                found["prompts"] = hashlib.sha256(prompts_path(self).read_bytes()).hexdigest()
            except (OSError, UserError):
                pass  # reported where the file is read
        for agent in self.agents.values():
            if agent.demos and isinstance(agent.demos.get("pool"), str):
                from aidsafe.config._prompts import precedent_pool_path

                try:
                    found[f"pool:{agent.name}"] = hashlib.sha256(
                        precedent_pool_path(self, agent.name).read_bytes()).hexdigest()
                except (OSError, UserError):
                    pass
        return found

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def files_read(self) -> list[Path]:
        """Every file a run of this recipe reads: the recipe, the recipes it
        extends, its policy file, its ``prompts.json`` and precedent pools
        (an output must never be one of them). A reference that does not
        resolve is left out: loading reports it."""
        from aidsafe._util import paths

        found = [self.path]
        for display in self.chain:
            found.append(Path(display) if Path(display).is_absolute() else paths.project_root() / display)
        try:
            if self.inline_policies is None:
                from aidsafe.config._policies import policy_path

                found.append(policy_path(self.policy_ref, self.base_dir))
        except (UserError, OSError, ValueError):
            pass
        if self.prompts:
            from aidsafe.config._prompts import prompts_path

            try:
                found.append(prompts_path(self))
            except (UserError, OSError, ValueError):
                pass
        for agent in self.agents.values():
            if agent.demos and isinstance(agent.demos.get("pool"), str):
                from aidsafe.config._prompts import precedent_pool_path

                try:
                    found.append(precedent_pool_path(self, agent.name))
                except (UserError, OSError, ValueError):
                    pass
        return found

    def load_policies(self):
        """The recipe's policies: the set it names (relative to its folder),
        the ones it writes inline, or a set's subset plus its own additions."""
        from aidsafe.config._policies import resolve_policies

        return resolve_policies(self.data["policies"], self.base_dir, str(self.path))

    def stage(self, stage_id: str) -> StageSpec:
        for spec in self.stages:
            if spec.id == stage_id:
                return spec
        raise UserError(f"no stage {stage_id!r} in recipe {self.name}{suggest(stage_id, [s.id for s in self.stages])}")
