"""The engine uses two private DSPy names, each with a fallback to public
API: lm15's serde (``dspy._vendor.lm15.serde``) for call keys and cached
answers, and ``dspy.clients.execution._select_engine`` for the direct
provider path. Each test takes the private name away and checks that the
engine still works."""

from __future__ import annotations

import json
import sys
import types

import dspy.clients.execution
import pytest
from dspy.lm15 import (
    Config,
    DataPart,
    Message,
    Request,
    Response,
    TextPart,
    ThinkingPart,
    TokenLogprob,
    ToolCallPart,
    TopLogprob,
    Usage,
)

from aidsafe.config._specs import ModelSpec
from aidsafe.models import _engine, _serde
from aidsafe.models._engine import RemoteEngine, build_models
from aidsafe.store._cache import Cache
from aidsafe.testing.mock_server import MockOpenAIServer


@pytest.fixture
def no_private_serde(monkeypatch):
    """DSPy as if it had no ``_vendor.lm15.serde``; the engine's codec is the
    one loaded then."""
    monkeypatch.setitem(sys.modules, _serde.PRIVATE_SERDE, None)  # import now raises ImportError
    codec = _serde.load_codec()
    for name in ("request_to_dict", "response_to_dict", "response_from_dict"):
        monkeypatch.setattr(_engine, name, getattr(codec, name))
    return codec


def test_this_dspy_still_has_the_private_serde():
    assert _serde.CODEC.source == _serde.PRIVATE_SERDE, "DSPy moved lm15's serde: the local codec is in use"


def test_without_the_private_serde_a_response_survives_json_exactly(no_private_serde):
    assert no_private_serde.source == "local"
    response = Response(
        id="r1", model="m", finish_reason="stop", usage=Usage(input_tokens=3, output_tokens=4),
        message=Message(role="assistant", parts=(
            TextPart(text="hi"), ThinkingPart(text="let me think"),
            ToolCallPart(id="c1", name="f", input={"a": [1, 2]}), DataPart(value={"k": [1, "two"]}))),
        logprobs=(TokenLogprob(token="a", logprob=-0.1, bytes=(97,), top=(TopLogprob(token="b", logprob=-2.0),)),),
    )
    stored = json.loads(json.dumps(no_private_serde.response_to_dict(response)))
    assert no_private_serde.response_from_dict(stored) == response
    with pytest.raises(ValueError, match="not a public dspy.lm15 dataclass"):
        no_private_serde.response_from_dict({"__lm15__": "LiveServerTextEvent"})


def test_without_the_private_serde_calls_are_keyed_and_replayed_from_the_cache(no_private_serde, fake, tmp_path):
    fake.rules = [("", "an answer")]
    handle = build_models({"m": ModelSpec("m", "fake:test")}, Cache(tmp_path / "c"))["m"]
    request = Request(model="m", system="sys", messages=(Message.user("hi"),), config=Config(max_tokens=9))
    other = Request(model="m", system="sys", messages=(Message.user("bye"),), config=Config(max_tokens=9))
    assert handle.engine.call_key(request) == handle.engine.call_key(request) != handle.engine.call_key(other)
    first = handle.engine.complete(request)
    calls = fake.calls
    again = handle.engine.complete(request)
    assert fake.calls == calls, "the second call was not answered from the cache"
    assert again.text == first.text == "an answer"


def test_without_select_engine_remote_calls_go_through_the_public_lm(monkeypatch):
    assert _engine._direct_path() is not None
    # A DSPy whose execution module has no `_select_engine` (DSPy's own code
    # keeps the real module, which it still calls into).
    real = dspy.clients.execution
    bare = types.ModuleType(real.__name__)
    bare.__dict__.update({k: v for k, v in vars(real).items() if k not in ("_select_engine", "__name__")})
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, real.__name__, bare)
        direct = _engine._direct_path()
    assert direct is None
    monkeypatch.setattr(_engine, "_DIRECT", direct)
    request = Request(model="m", system="sys", messages=(Message.user("hi"),))
    with MockOpenAIServer() as server:
        engine = RemoteEngine(ModelSpec("m", "openai/mock-model", api_base=server.url))
        response = engine.complete(request)
        assert response.text and server.calls == 1
    assert len(engine.lm.history) == 1  # it went through dspy.LM
