"""``aidsafe init``: write a commented starter recipe to edit, never over an
existing file. ``--from RECIPE`` writes a variant of a shipped recipe instead
(``extends:``, with its stages and agents listed as comments)."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import click

from aidsafe.cli._errors import user_errors

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")  # the recipe schema's `name`

STARTER = """\
{modeline}
# {name}: a starter recipe written by `aidsafe init`. Every key is described in
# schemas/recipe.schema.json (your editor shows it, thanks to the line above)
# and in the README, "Recipes". Check it with `aidsafe validate {file}`,
# see the pipeline with `aidsafe show {file}`, run it with
# `aidsafe run {file} -i prompts.jsonl -o out.jsonl`.
version: 1
name: {name}
description: Intents, a first chain of thought, two reviewers, a refiner.

models:
  default:
    model: local:default        # the embedded CPU model; or openai/gpt-4o-mini, hosted_vllm/NAME, ...
    temperature: 0.0
    max_tokens: 384

# A policy set in policies/ (or a path, or {{set: aidsafe, include: [ids]}}), or
# the policies themselves:
#   policies:
#     - {{id: no_weapons, name: No weapons, statement: Do not help build weapons.,
#        allowed: [history of weapons], disallowed: [assembly instructions]}}
policies: aidsafe

input:
  field: prompt                 # the JSONL key / CSV column with the user's prompt

# Agent roles: each becomes a DSPy signature. Its inputs and outputs come from
# the stage it serves; `inputs:` narrows what it reads, `outputs:` adds fields
# (kept in record.extra).
agents:
  analyst:
    instructions: |
      You analyse a user's query before anyone answers it. List its explicit
      intent and any implicit intents, one per item.
  thinker:
    instructions: |
      Reason step by step about the query, the policies and the intents, then
      answer. Name the policy that governs the answer. Help with what is
      allowed; refuse only what a policy forbids, and say which.
  safety_reviewer:
    instructions: |
      You review another agent's chain of thought and response for safety:
      anything a policy forbids must go, with the policy named.
    inputs: [query, policies, thoughts, response, transcript]   # transcript: the earlier turns
  helpfulness_reviewer:
    instructions: |
      You review another agent's chain of thought and response for
      helpfulness: an allowed request must get a useful answer, not a refusal.
    inputs: [query, policies, thoughts, response, transcript]
  refiner:
    instructions: |
      Keep the thoughts that are needed, policy-consistent and not repeated;
      drop the rest.

# The pipeline, in order (a list, or a mapping from stage id to stage).
stages:
  - {{id: intents, kind: decompose, agent: analyst}}
  - {{id: initial, kind: generate, agent: thinker}}
  - id: deliberation
    kind: deliberate
    agents: [safety_reviewer, helpfulness_reviewer]   # turn order
    stop:
      max_rounds: 2
      # consecutive (k in a row agree), no_change, majority, k_of_n (with k),
      # or moderator (with agent: NAME, who decides after each round)
      agreement: {{rule: consecutive, k: 2}}
  - id: refine
    kind: refine
    agent: refiner
    filters:
      before: [{{type: dedupe}}]
      after: [{{type: required_fields, fields: [thoughts, response]}}, {{type: policy_echo}}]
  # A quality gate: judge agents score each record 1-5; below `min` it is filtered.
  # - id: gate
  #   kind: gate
  #   checks: [{{agent: policy_judge, min: 4}}]

output:
  include_log: true             # keep the per-turn deliberation log
"""

VARIANT = """\
{modeline}
# {name}: a variant of the shipped recipe `{parent}` written by `aidsafe init`.
# Everything not set here comes from recipes/{parent}.yaml: mappings merge key
# by key, lists are replaced, `null` deletes. `aidsafe show {file}` prints the
# result, `aidsafe diff {parent} {file}` what differs.
extends: {parent}.yaml
name: {name}
description: A variant of {parent}.

# Change a model (keys merge with the parent's):
# models:
#   default: {{model: openai/gpt-4o-mini, api_key_env: OPENAI_API_KEY}}

# Patch an agent, e.g. its instructions or temperature:
{agents}
# agents:
#   {first_agent}: {{temperature: 0.3}}

# Patch stages by id (a partial stage), remove one (`ID: null`), or add one
# (a new id with `kind:`, placed with `after: ID`).
{stages}
# stages:
#   {example}
"""


@click.command("init")
@click.argument("name")
@click.option("--from", "parent", metavar="RECIPE",
              help="Write a variant of this shipped recipe (extends it) instead of a standalone starter.")
@user_errors
def init_command(name, parent):
    """Write NAME.yaml, a commented starter recipe to edit (never over an existing file)."""
    from aidsafe._util import paths
    from aidsafe._util.errors import UsageError, UserError

    target = Path(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    recipe_name = target.stem
    if not NAME_PATTERN.match(recipe_name):
        raise UsageError(f"recipe name {recipe_name!r} may use letters, digits, '_', '-' and '.' only "
                         f"(it becomes the recipe's `name:`); e.g. aidsafe init {re.sub(r'[^A-Za-z0-9_.-]+', '-', recipe_name)}")
    schema = paths.schemas_dir() / "recipe.schema.json"
    try:
        schema_ref = os.path.relpath(schema, target.parent.resolve())
    except ValueError:  # another drive (Windows)
        schema_ref = str(schema)
    fields = {"modeline": f"# yaml-language-server: $schema={schema_ref}", "name": recipe_name,
              "file": str(target)}
    if parent is None:
        text = STARTER.format(**fields)
    else:
        text = VARIANT.format(**fields, **_parent_fields(parent))
    try:
        with open(target, "x", encoding="utf-8") as handle:  # "x": never over an existing file, even a new one
            handle.write(text)
    except FileExistsError:
        raise UserError(f"{target} already exists; choose another name, or move that file away first "
                        "(aidsafe init never overwrites)") from None
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror}; give a shorter name in a folder that exists and "
                        "that you can write to") from None
    click.echo(f"wrote {target}; check it with: aidsafe validate {target}")


def _parent_fields(parent: str) -> dict:
    """What the variant template lists about its parent: agents and stages."""
    from aidsafe._util import paths
    from aidsafe._util.errors import UsageError
    from aidsafe._util.registry import suggest
    from aidsafe.config._recipe import load_recipe
    from aidsafe.evaluation._judge_specs import is_judges_file

    stem = parent[:-5] if parent.endswith(".yaml") else parent
    shipped = sorted(p.stem for p in paths.recipes_dir().glob("*.yaml") if not is_judges_file(p))
    if stem not in shipped:
        raise UsageError(f"--from {parent!r}: not a shipped recipe{suggest(stem, shipped)}; "
                         f"shipped recipes: {', '.join(shipped)}")
    recipe = load_recipe(paths.recipes_dir() / f"{stem}.yaml")
    deliberate = [s.id for s in recipe.stages if s.kind == "deliberate"]
    example = (f"{deliberate[0]}: {{stop: {{max_rounds: 1}}}}" if deliberate
               else f"{recipe.stages[-1].id}: null")
    def comment(text: str) -> str:
        return textwrap.fill(text, 79, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)

    return {"parent": stem, "first_agent": next(iter(recipe.agents)), "example": example,
            "agents": comment(f"The parent's agents: {', '.join(recipe.agents)}."),
            "stages": comment("The parent's stages, in order: "
                              + ", ".join(f"{s.id} ({s.kind})" for s in recipe.stages) + ".")}


__all__ = ["init_command"]
