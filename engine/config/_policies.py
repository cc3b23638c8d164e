"""Policy sets: YAML data validated by ``schemas/policy.schema.json``.

A recipe names a set (``aidsafe`` -> ``policies/aidsafe.yaml``) or gives a
path inside ``policies/`` or the recipe's folder, and may keep only some ids.
The hash covers exactly the text the agents see, so editing a policy
invalidates every cached stage that reads the policies and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from aidsafe._util import paths
from aidsafe._util.errors import RecipeError, UserError
from aidsafe._util.hashing import sha256_of
from aidsafe.config._schema import validate_document
from aidsafe.config._yaml import load_yaml_file


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
        return sha256_of({"name": self.name, "text": self.text})

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.policies]


def policy_path(ref: str, base: Path | None = None) -> Path:
    """Resolve a policy reference: a bare name means ``policies/<name>.yaml``;
    anything with a slash or a .yaml suffix is a path inside ``policies/`` or
    the recipe's own folder."""
    folder = paths.policies_dir()
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
    policies = [Policy(id=p["id"], name=p["name"], statement=p["statement"],
                       allowed=tuple(p.get("allowed", [])), disallowed=tuple(p.get("disallowed", [])))
                for p in data["policies"]]
    ids = [p.id for p in policies]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RecipeError([f"{located.file}: duplicate policy id(s) {', '.join(duplicates)}; ids must be unique"],
                          source=located.file)
    if include:
        from aidsafe._util.registry import suggest

        unknown = [i for i in include if i not in ids]
        if unknown:
            raise UserError(f"policy id(s) {', '.join(map(repr, unknown))} not in set {data['name']!r}"
                            f"{suggest(unknown[0], ids)}; known ids: {', '.join(ids)}")
        policies = [p for p in policies if p.id in include]
    return PolicySet(name=data["name"], source=located.file, policies=tuple(policies))


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(paths.project_root()))
    except ValueError:
        return str(path)
