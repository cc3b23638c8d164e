"""The yes/no schema check agrees with jsonschema: on every shipped and
broken document, and on generated variants of them; it never calls valid
what jsonschema rejects."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidsafe._util.schema_check import is_valid, json_equal

from ..conftest import ROOT

SCHEMAS = {name: json.loads((ROOT / "schemas" / name).read_text(encoding="utf-8"))
           for name in ("recipe.schema.json", "policy.schema.json", "judges.schema.json")}


def documents():
    for path in sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "tests" / "invalid_recipes").glob("*.yaml")):
        schema = "judges.schema.json" if path.name == "judges.yaml" else "recipe.schema.json"
        yield schema, path.name, yaml.safe_load(path.read_text(encoding="utf-8"))
    for path in sorted((ROOT / "policies").glob("*.yaml")):
        yield "policy.schema.json", path.name, yaml.safe_load(path.read_text(encoding="utf-8"))


DOCUMENTS = list(documents())


def jsonschema_valid(schema: str, document) -> bool:
    return jsonschema.Draft202012Validator(SCHEMAS[schema]).is_valid(document)


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_every_shipped_schema_is_decided_here(schema):
    assert is_valid(SCHEMAS[schema], {}) is not None, f"{schema} uses a keyword the check does not know"


@pytest.mark.parametrize("schema,name,document", DOCUMENTS, ids=[d[1] for d in DOCUMENTS])
def test_shipped_and_broken_documents_get_jsonschemas_answer(schema, name, document):
    assert is_valid(SCHEMAS[schema], document) == jsonschema_valid(schema, document)


def test_the_broken_recipes_are_rejected_and_the_shipped_ones_accepted():
    answers = {name: is_valid(SCHEMAS[schema], doc) for schema, name, doc in DOCUMENTS}
    assert answers["aidsafe.yaml"] is True and answers["baseline.yaml"] is True
    assert answers["missing_required.yaml"] is False


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.sampled_from(
    ["", "x", "local:default", "deliberate", "ok", "a b", "fake:test", "auto"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["model", "kind", "id", "agent", "k", "min", "max", "x", "name", "stages"]), inner, max_size=3),
    max_leaves=8)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _paths(sub, prefix + (key,))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _paths(sub, prefix + (i,))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_variants_get_jsonschemas_answer(data):
    schema, _, document = data.draw(st.sampled_from(DOCUMENTS))
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(document))))
        if not path:
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = data.draw(JSON)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["extra", "kind", "model", "when", "k"]))] = data.draw(JSON)
        else:
            parent.append(data.draw(JSON))
    answer = is_valid(SCHEMAS[schema], document)
    assert answer is None or answer == jsonschema_valid(schema, document)


def test_odd_documents_are_left_to_jsonschema():
    assert is_valid(SCHEMAS["recipe.schema.json"], {1: "a non-string key"}) is None
    assert is_valid({"type": "object", "unevaluatedProperties": False}, {}) is None


def test_json_equality_tells_booleans_from_numbers():
    assert json_equal(1, 1.0) and json_equal([1, {"a": 2}], [1.0, {"a": 2}])
    assert not json_equal(1, True) and not json_equal(0, False) and not json_equal([1], {"a": 1})
    assert is_valid({"enum": [1]}, True) is False and is_valid({"const": False}, 0) is False
