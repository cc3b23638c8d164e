"""``threads: auto`` and ``poll``: parsing, the automatic choice (cores this
process may use, less the load), llama.cpp's parameters, and the choice in
provenance but never in a cache key."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import SimpleNamespace

import pytest

import aidsafe
from aidsafe._util.errors import ModelError
from aidsafe._util.progress import Progress
from aidsafe.config import load_recipe
from aidsafe.config._specs import ModelSpec
from aidsafe.models._engine import register_engine, unregister_engine
from aidsafe.models.local import _threads
from aidsafe.models.local._engine import LlamaCppEngine
from aidsafe.models.local._threads import ThreadChoice, choose_threads
from aidsafe.models.local._weights import LocalModel
from aidsafe.testing.fake import FakeEngine

from ..conftest import MINI, options, read_jsonl


@pytest.fixture
def machine(monkeypatch):
    """Set the cores this process may use and the load ``auto`` sees."""

    def set_(cores: int, load: float, running: float | None = 0.0):
        monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        monkeypatch.setattr(_threads.os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(_threads, "_running_now", lambda: running)

    return set_


@pytest.mark.parametrize(("cores", "load", "running", "threads"), [
    (2, 0.1, 0.0, 2),   # idle: every core
    (2, 0.6, 0.0, 1),   # one core's worth busy (rounded half up)
    (2, 4.8, 0.0, 1),   # busier than the machine: never below 1
    (4, 1.4, 0.0, 3),
    (8, 0.0, 0.0, 8),
    (4, 0.2, 2.0, 2),   # the 1-minute average lags: two tasks running now count
    (4, 3.0, 1.0, 1),   # ... and an average above the runnable count counts too
    (1, 0.0, None, 1),  # no /proc/stat: the average alone
])
def test_auto_takes_the_free_cores(machine, cores, load, running, threads):
    machine(cores, load, running)
    choice = choose_threads("auto")
    assert (choice.threads, choice.poll, choice.setting, choice.cores) == (threads, 0, "auto", cores)
    assert choice.load == max(load, running or 0.0)
    assert choose_threads(None) == choice  # unset means auto


def test_auto_counts_the_cores_of_the_affinity_mask_not_the_machine(machine, monkeypatch):
    machine(1, 0.0)  # e.g. `taskset -c 3` or a container's cpuset on a bigger machine
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 64)
    assert choose_threads().threads == 1


def test_a_number_and_a_poll_are_taken_as_written(monkeypatch):
    monkeypatch.setattr(_threads, "current_load", lambda: pytest.fail("an explicit count reads no load"))
    choice = choose_threads(3, 50)
    assert choice == ThreadChoice(3, 50, 3)
    assert choice.to_dict() == {"threads": 3, "poll": 50, "setting": 3}
    assert choice.describe() == "threads 3, poll 50"


@pytest.mark.parametrize(("setting", "poll", "message"), [
    (0, None, "threads must be 'auto' or a whole number >= 1, got 0"),
    ("all", None, "threads must be 'auto' or a whole number >= 1, got 'all'"),
    (True, None, "got True"),
    (2, 101, "poll must be 0-100, got 101"),
    (2, -1, "poll must be 0-100, got -1"),
])
def test_bad_settings_are_refused(setting, poll, message):
    with pytest.raises(ValueError, match=message):
        choose_threads(setting, poll)


def test_the_choice_says_why(machine):
    machine(2, 1.27)
    choice = choose_threads()
    assert choice.to_dict() == {"threads": 1, "poll": 0, "setting": "auto", "cores": 2, "load": 1.27}
    assert choice.describe() == "threads 1, poll 0 (auto: 2 cores, load 1.3)"


def test_recipe_threads_and_poll_reach_the_spec(recipe_file):
    text = MINI.replace('default: {model: "fake:test"}',
                        'default: {model: "fake:test", threads: auto, poll: 20}\n'
                        '  other: {model: "fake:test", threads: 1}')
    recipe = load_recipe(recipe_file(text))
    assert (recipe.models["default"].threads, recipe.models["default"].poll) == ("auto", 20)
    assert (recipe.models["other"].threads, recipe.models["other"].poll) == (1, None)


def test_bad_values_are_recipe_errors_with_file_and_line(recipe_file):
    from aidsafe._util.errors import RecipeError

    text = MINI.replace('default: {model: "fake:test"}', 'default: {model: "fake:test", threads: -2, poll: 200}')
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_file(text))
    problems = sorted(p.split("/")[-1] for p in info.value.problems)
    assert problems == ["recipe.yaml:4 models.default.poll: expected a number with maximum 100, found 200",
                        'recipe.yaml:4 models.default.threads: expected an integer >= 1 or "auto", found integer -2']


# --------------------------------------------------------------------------
# The engine: llama.cpp's parameters, load, provenance
# --------------------------------------------------------------------------


def _model(tmp_path: Path) -> LocalModel:
    return LocalModel("tiny", tmp_path / "tiny.gguf", "0" * 64)


@pytest.mark.parametrize(("threads", "poll", "message"), [
    (0, None, "n_threads must be 'auto' or at least 1, got 0"),
    ("many", None, "n_threads must be 'auto' or at least 1, got 'many'"),
    (2, 101, "poll must be 0-100, got 101"),
])
def test_engine_refuses_bad_settings(tmp_path, threads, poll, message):
    with pytest.raises(ModelError, match=message):
        LlamaCppEngine(_model(tmp_path), n_threads=threads, poll=poll)


def test_threads_stay_out_of_the_identity(tmp_path):
    one = LlamaCppEngine(_model(tmp_path), n_threads=1, poll=50)
    auto = LlamaCppEngine(_model(tmp_path))
    assert one.identity() == auto.identity()
    assert "threads" not in str(auto.identity()) and "poll" not in str(auto.identity())
    assert auto.runtime() is None  # nothing chosen before the model loads


def test_params_set_threads_and_poll_for_generation_and_prompt_reading(tmp_path):
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install -e '.[local]')")
    from aidsafe.models.local._engine import _make_params

    params = _make_params(_model(tmp_path), threads=ThreadChoice(1, 0), n_ctx=512, n_parallel=1, repeat_penalty=1.1,
                          seed=0, host="127.0.0.1", port=0, api_key=None, http_threads=1, prompt_ram_cache_mib=0)
    for cpu in (params.cpuparams, params.cpuparams_batch):
        assert (cpu.n_threads, cpu.poll) == (1, 0)


def test_auto_is_chosen_once_when_the_model_loads_and_reported(tmp_path, machine, monkeypatch):
    from aidsafe.models.local import _engine

    (tmp_path / "tiny.gguf").write_bytes(b"GGUF")
    seen = []
    monkeypatch.setattr(_engine, "_make_params", lambda model, **kw: seen.append(kw["threads"]) or kw)
    monkeypatch.setattr(_engine, "_start_server", lambda params, model: SimpleNamespace())
    machine(2, 1.1)
    engine = LlamaCppEngine(_model(tmp_path))
    log = io.StringIO()
    bar = Progress(1, stream=log, live=True)
    try:
        engine._ensure_loaded()
        machine(2, 0.0)  # the load drops: the loaded model keeps its threads
        engine._ensure_loaded()
    finally:
        bar.close()
    assert seen == [ThreadChoice(1, 0, "auto", 2, 1.1)]
    assert engine.runtime() == {"threads": 1, "poll": 0, "setting": "auto", "cores": 2, "load": 1.1}
    lines = log.getvalue().splitlines()
    assert lines[0] == "aidsafe: loading model tiny (threads 1, poll 0 (auto: 2 cores, load 1.1)) ..."
    assert lines[1].startswith("aidsafe: model tiny loaded in ") and lines[1].endswith("s")


def test_auto_and_unset_share_one_loaded_model_and_a_number_does_not(monkeypatch, tmp_path):
    from aidsafe.models import _engine as M

    monkeypatch.setattr("aidsafe.models.local.resolve_local", lambda ref, cache_dir: _model(tmp_path))
    monkeypatch.setattr(M, "_LOCAL_ENGINES", {})
    unset = M.backend_for(ModelSpec("judge", "local:tiny"))
    auto = M.backend_for(ModelSpec("default", "local:tiny", threads="auto", poll=0))
    one = M.backend_for(ModelSpec("other", "local:tiny", threads=1))
    assert unset is auto and one is not auto
    assert (auto.n_threads, auto.poll, one.n_threads) == ("auto", 0, 1)


class _Threaded(FakeEngine):
    """A fake that says how it ran, like the local engine once loaded."""

    def __init__(self, threads: int):
        super().__init__()
        self.threads = threads

    def runtime(self):
        return {"threads": self.threads, "poll": 0, "setting": "auto", "cores": 2, "load": 0.4}


@pytest.fixture
def threaded():
    engines = {}

    def make(threads: int):
        engines["e"] = _Threaded(threads)
        register_engine("threaded", lambda spec: engines["e"])
        return engines["e"]

    yield make
    unregister_engine("threaded")


def test_provenance_records_the_choice_and_the_cache_ignores_it(threaded, recipe_file, prompts, tmp_path):
    recipe, inputs = recipe_file(MINI), prompts(["alpha", "beta"])
    opts = {"model_overrides": {"default": "fake:threaded"}}
    engine = threaded(2)
    engine.rules = [("CRITIC_", {"agree": True})]
    aidsafe.run(recipe, inputs, tmp_path / "a.jsonl", options(tmp_path / "c", **opts))
    first = read_jsonl(tmp_path / "a.jsonl")
    assert [r["provenance"]["runtime"] for r in first] == [
        {"default": {"threads": 2, "poll": 0, "setting": "auto", "cores": 2, "load": 0.4}}] * 2
    assert "threads" not in str(first[0]["provenance"]["models"])
    calls = engine.calls

    # Another thread count answers the same: every stage comes from the
    # cache, and the record still says the threads that computed it.
    engine = threaded(1)
    summary = aidsafe.run(recipe, inputs, tmp_path / "b.jsonl", options(tmp_path / "c", **opts))
    assert engine.calls == 0 and calls > 0 and summary.stage_misses == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_a_backend_that_says_nothing_adds_no_runtime(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    aidsafe.run(recipe_file(MINI), prompts(["alpha"]), tmp_path / "a.jsonl", options(tmp_path / "c"))
    assert "runtime" not in read_jsonl(tmp_path / "a.jsonl")[0]["provenance"]


@pytest.mark.model
def test_smoke_model_runs_on_auto_threads_and_says_so(recipe_file, prompts, tmp_path, monkeypatch, capsys):
    """The real engine: auto picks within the usable cores, poll 0; the run's
    log says the model is loading, how long it took, and the answer's speed."""
    from aidsafe.models import _engine as M
    from aidsafe.models.local import _weights as W

    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install -e '.[local]')")
    try:
        W.find_smoke_model()
    except ModelError as e:
        pytest.skip(f"smoke model unavailable: {e}")
    monkeypatch.setattr(M, "_LOCAL_ENGINES", {})  # a model this test loads itself
    recipe = recipe_file("""name: smoke-threads
models:
  default: {model: local:smoke, temperature: 0.0, max_tokens: 160}
policies: aidsafe
agents:
  thinker: {instructions: "Think briefly, then answer."}
stages:
  - {id: initial, kind: generate, agent: thinker}
""")
    aidsafe.run(recipe, prompts(["What is 2 + 2?"]), tmp_path / "o.jsonl",
                aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=True))
    record = read_jsonl(tmp_path / "o.jsonl")[0]
    assert record["status"] == "ok", record.get("error")
    runtime = record["provenance"]["runtime"]["default"]
    assert runtime["setting"] == "auto" and runtime["poll"] == 0
    assert 1 <= runtime["threads"] <= runtime["cores"] == _threads.usable_cores()
    assert "threads" not in str(record["provenance"]["models"])
    lines = capsys.readouterr().err.splitlines()
    loading = next(i for i, line in enumerate(lines) if line.startswith("aidsafe: loading model smollm2"))
    loaded = next(i for i, line in enumerate(lines) if " loaded in " in line)
    answered = next(i for i, line in enumerate(lines) if "default answered" in line and "tok/s" in line)
    done = next(i for i, line in enumerate(lines) if line.startswith("aidsafe: 1/1 rec (100%)"))
    assert 0 < loading < loaded < answered < done
    # a warm rerun loads nothing and writes the same bytes, the threads included
    aidsafe.run(recipe, prompts(["What is 2 + 2?"]), tmp_path / "again.jsonl",
                aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=True))
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "o.jsonl").read_bytes()
    assert "loading model" not in capsys.readouterr().err
