"""Policy sets: YAML data validated by ``schemas/policy.schema.json``.

A recipe (or a judges file) names a set (``aidsafe`` -> ``policies/aidsafe.yaml``)
or gives a path inside ``policies/`` or its own folder; writes its policies
inline (a list of ``{id, name, statement, allowed, disallowed}``); or takes a
set's ids and adds its own (``{set, include, add}``, ids and inline policies
mixed in ``include``). :func:`resolve_policies` is the one resolver of all
forms, :func:`policies_problems` its checks, each at its line. The hash covers
exactly the text the agents see (never the set's name), so editing a policy
invalidates every cached stage that reads the policies and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from aidsafe._util import paths
from aidsafe._util.errors import RecipeError, UserError
from aidsafe._util.hashing import sha256_of
from aidsafe.config._schema import load_schema, validate_document
from aidsafe.config._yaml import Located, PathKey, format_path, load_yaml_file

# The name of a set written inside a recipe. Constant, so the set's hash (in
# every policy-reading stage's cache key) covers the policy text only, not
# the recipe's name.
INLINE = "inline"


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    statement: str
    allowed: tuple[str, ...] = ()
    disallowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicySet:
    """A loaded policy set; ``text`` is what agents see, ``hash`` keys caches."""

    name: str
    source: str
    policies: tuple[Policy, ...]

    @cached_property
    def text(self) -> str:
        blocks = []
        for number, policy in enumerate(self.policies, 1):
            lines = [f"P{number} [{policy.id}] {policy.name}: {policy.statement.strip()}"]
            if policy.allowed:
                lines.append("  Allowed: " + "; ".join(policy.allowed))
            if policy.disallowed:
                lines.append("  Not allowed: " + "; ".join(policy.disallowed))
            blocks.append("\n".join(lines))
        return "\n".join(blocks)

    @cached_property
    def hash(self) -> str:
        """sha256 of the text only: the same policies under another set name
        (a subset, an inline copy) are the same policies."""
        return sha256_of({"text": self.text})

    @property
    def known_hashes(self) -> frozenset[str]:
        """:attr:`hash` and the older hash of name and text that records
        written before aidsafe hashed the text alone carry: resume and eval
        take both as these policies."""
        return frozenset({self.hash, sha256_of({"name": self.name, "text": self.text})})

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.policies]


def policy_path(ref: str, base: Path | None = None) -> Path:
    """Resolve a policy reference: a bare name means ``policies/<name>.yaml``;
    anything with a slash or a .yaml suffix is a path inside ``policies/`` or
    the recipe's own folder."""
    folder = paths.policies_dir()
    if "\0" in ref or any(len(part.encode()) > 255 for part in Path(ref).parts):
        raise UserError(f"policy set {ref!r} is not a usable file name; name a set in policies/ or a .yaml file")
    if "/" not in ref and not ref.endswith((".yaml", ".yml")):
        candidate = folder / f"{ref}.yaml"
        if not candidate.is_file():
            known = sorted(p.stem for p in folder.glob("*.yaml"))
            from aidsafe._util.registry import suggest

            raise UserError(f"unknown policy set {ref!r}{suggest(ref, known)}; known sets: {', '.join(known)}")
        return candidate
    allowed = [folder] + ([base] if base is not None else [])
    return paths.resolve_inside(ref, base or folder, allowed, "policy file")


def load_policy_set(ref: str, base: Path | None = None, include: list[str] | None = None) -> PolicySet:
    """Load, validate and optionally subset a policy set."""
    path = policy_path(ref, base)
    located = load_yaml_file(path, display=_display(path))
    validate_document(located, "policy.schema.json")
    data = located.data
    duplicates = _duplicate_ids(data["policies"])
    if duplicates:
        raise RecipeError([f"{located.file}:{located.where(path)[1]} {format_path(path)}: {message}"
                           for path, message in duplicates], source=located.file)
    policies = _policies(data["policies"])
    ids = [p.id for p in policies]
    if include:
        from aidsafe._util.registry import suggest

        unknown = [i for i in include if i not in ids]
        if unknown:
            raise UserError(f"policy id(s) {', '.join(map(repr, unknown))} not in set {data['name']!r}"
                            f"{suggest(unknown[0], ids)}; known ids: {', '.join(ids)}")
        policies = [p for p in policies if p.id in include]
    return PolicySet(name=data["name"], source=located.file, policies=tuple(policies))


POLICY_FORMS = ("write `policies:` as a set name (aidsafe), a list of {id, name, statement, allowed, disallowed}, "
                "or {set: aidsafe, include: [ID or {id, name, statement, ...}], add: [{id, name, statement, ...}]}")


def policies_problems(value, located: Located, base: Path | None, at: PathKey = ("policies",)) -> list[tuple[PathKey, str]]:
    """Every problem with a ``policies:`` value in any of its forms (see
    :func:`resolve_policies`), as (JSON path in the document, message)."""
    try:
        _resolve(value, base, located, at, "")
    except _Problems as exc:
        return exc.problems
    return []


def resolve_policies(value, base: Path | None, source: str = "") -> PolicySet:
    """The policy set a ``policies:`` value gives (already checked by
    :func:`policies_problems` when its file loaded):

    - ``aidsafe`` (a set in policies/, or a path);
    - ``[{id, name, statement, allowed, disallowed}, ...]``: written inline;
    - ``{set: aidsafe, include: [ID | {policy}], add: [{policy}]}``: the set,
      only the ids ``include`` names (all without ``include``), then the
      inline policies of ``include`` and ``add``, in order.
    """
    try:
        return _resolve(value, base, Located(value), (), source)
    except _Problems as exc:
        raise UserError("policies: " + "; ".join(message for _, message in exc.problems)) from None


class _Problems(Exception):
    def __init__(self, problems: list[tuple[PathKey, str]]):
        super().__init__(problems)
        self.problems = problems


def _resolve(value, base: Path | None, located: Located, at: PathKey, source: str) -> PolicySet:
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema("policy.schema.json"))
    problems: list[tuple[PathKey, str]] = []
    chosen: list[tuple[PathKey, dict | Policy]] = []  # (where it was written, policy)

    def inline(items: list, where: PathKey) -> None:
        objects = [(i, item) for i, item in enumerate(items) if not isinstance(item, str)]
        if not objects:
            return
        # an object the policy schema refuses is left out: the recipe's (or judges file's) schema, which
        # describes inline policies, reports it at its line
        chosen.extend((where + (i,), item) for i, item in objects
                      if not any(True for _ in validator.iter_errors({"name": INLINE, "policies": [item]})))

    name, set_source = INLINE, source
    if isinstance(value, str):
        name, set_source, found = _named_set(value, base, at, problems)
        chosen = [((), p) for p in found]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                problems.append((at + (i,), f"policy id {item!r} names no set here; to keep ids of a set and add "
                                            f"your own, write `policies: {{set: aidsafe, include: [{item}, ...], "
                                            "add: [{id, name, statement}]}`"))
        inline(value, at)
    elif isinstance(value, dict):
        ref, include, add = value.get("set"), value.get("include"), value.get("add")
        found: list[Policy] = []
        if isinstance(ref, str):
            name, set_source, found = _named_set(ref, base, at + ("set",), problems)
        ids = [p.id for p in found]
        if isinstance(include, list):
            wanted = [i for i in include if isinstance(i, str)]
            for k, item in enumerate(include):
                if isinstance(item, str) and found and item not in ids:
                    from aidsafe._util.registry import suggest

                    problems.append((at + ("include", k), f"policy id {item!r} is not in set {ref!r}"
                                                          f"{suggest(item, ids)}; known ids: {', '.join(ids)}"))
            chosen = [((), p) for p in found if p.id in wanted]
            inline(include, at + ("include",))
        else:
            chosen = [((), p) for p in found]
        if isinstance(add, list):
            inline(add, at + ("add",))
        if include is not None or add is not None:
            name = f"{name}+" if add or any(not isinstance(i, str) for i in include or []) else name
    if problems:
        raise _Problems(sorted(set(problems), key=lambda item: located.where(item[0])[1]))
    policies = [p if isinstance(p, Policy) else _policies([p])[0] for _, p in chosen]
    first: dict[str, str] = {}
    for (where, _), policy in zip(chosen, policies):
        if policy.id in first:
            fix = "; rename the added one, or leave the set's out of `include:`" \
                if first[policy.id].startswith("set ") else ""
            problems.append((where + ("id",) if where else at,
                             f"duplicate policy id {policy.id!r} (also {first[policy.id]}); ids must be unique{fix}"))
        first.setdefault(policy.id, format_path(where) if where else f"set {name.rstrip('+')!r}")
    if problems:
        raise _Problems(problems)
    return PolicySet(name=name, source=set_source, policies=tuple(policies))


def _named_set(ref: str, base: Path | None, at: PathKey, problems: list) -> tuple[str, str, list[Policy]]:
    """A policy set file's name, source and policies; a problem at ``at``
    (and no policies) when it cannot be loaded."""
    try:
        loaded = load_policy_set(ref, base)
    except RecipeError as exc:
        problems.extend((at, p) for p in exc.problems)
        return ref, "", []
    except UserError as exc:
        problems.append((at, str(exc)))
        return ref, "", []
    return loaded.name, loaded.source, list(loaded.policies)


def _policies(items: list[dict]) -> list[Policy]:
    return [Policy(id=p["id"], name=p["name"], statement=p["statement"],
                   allowed=tuple(p.get("allowed", [])), disallowed=tuple(p.get("disallowed", [])))
            for p in items]


def _duplicate_ids(items: list[dict]) -> list[tuple[PathKey, str]]:
    """Each repeated policy id, at its second and later occurrences."""
    first: dict[str, int] = {}
    problems = []
    for index, item in enumerate(items):
        if item["id"] in first:
            problems.append((("policies", index, "id"), f"duplicate policy id {item['id']!r} (also "
                                                        f"policies[{first[item['id']]}]); ids must be unique"))
        first.setdefault(item["id"], index)
    return problems


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(paths.project_root()))
    except ValueError:
        return str(path)
