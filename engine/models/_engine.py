"""Models by name from a recipe's ``models:`` section.

Every model becomes a ``dspy.LM`` whose engine is a :class:`CachingEngine`
around the real backend:

* ``local:default`` / ``local:qwen-0.5b`` / ``local:qwen-1.5b`` /
  ``local:smoke`` / ``local:/path/model.gguf``: in-process llama.cpp (see
  :mod:`aidsafe.models.local`);
* ``NAME:...`` where NAME is a plugin backend (entry-point group
  ``aidsafe.backends``);
* any other string: a ``dspy.LM`` model string (``openai/...``,
  ``hosted_vllm/...``, ``ollama_chat/...``), sent by DSPy's own clients;
* ``fake:NAME``: an engine registered in-process with
  :func:`register_engine` (tests and benchmarks);
* ``mock``: the scripted model ``aidsafe run --dry-run`` runs on
  (:class:`aidsafe.testing.fake.DryRunEngine`: schema-valid answers varied by
  record, no network, no weights).

The caching engine owns the call-level cache (DSPy's own cache is off), a
per-model concurrency bound, and token/time accounting.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import random
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import dspy
from dspy.lm15 import Response, response_to_events

from aidsafe._util import progress
from aidsafe._util.errors import ModelError
from aidsafe._util.hashing import sha256_of
from aidsafe._util.redact import redact_values, register_secret_env, strip_userinfo
from aidsafe._util.registry import Registry
from aidsafe.config._specs import ModelSpec
from aidsafe.models._serde import request_to_dict, response_from_dict, response_to_dict
from aidsafe.store._cache import Cache

# Seconds one attempt of a remote call may take in all (connecting, waiting,
# reading) when the model sets no ``timeout``: a server that trickles bytes
# cannot hold a call past it.
DEFAULT_TIMEOUT = 300.0
# The longest wait a server's Retry-After can impose before a retry.
RETRY_AFTER_CAP = 60.0

CALL_KEY_VERSION = 2  # 2: stable-first prompt layout

_ENGINE_FACTORIES: dict[str, Callable[[ModelSpec], Any]] = {}
_LOCAL_ENGINES: dict[tuple, Any] = {}
_LOCAL_LOCK = threading.Lock()


def register_engine(name: str, factory: Callable[[ModelSpec], Any]) -> None:
    """Make ``model: fake:<name>`` build ``factory(spec)``: an object with
    ``complete(Request) -> Response`` and ``identity() -> dict``."""
    _ENGINE_FACTORIES[name] = factory


def unregister_engine(name: str) -> None:
    """Forget the engine :func:`register_engine` registered as ``name`` (no error if none)."""
    _ENGINE_FACTORIES.pop(name, None)


# ----------------------------------------------------------------- accounting

@dataclass
class ModelUsage:
    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    # prompt tokens the server reused from its prefix cache (llama.cpp slots
    # and prompt cache, vLLM prefix caching, hosted prompt caching): the
    # prompt tokens actually evaluated are input_tokens - cached_input_tokens
    cached_input_tokens: int = 0

    def add(self, other: "ModelUsage") -> None:
        """Add ``other``'s counts to these, in place."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class UsageMeter:
    """Token and call counts per model for one unit of work (a record, a
    stage). Meters nest: every active meter in the context sees each call."""

    by_model: dict[str, ModelUsage] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # model -> how the backend that answered ran (a local model's threads
    # and poll): provenance, never a cache key
    runtime: dict[str, dict] = field(default_factory=dict)

    def record(self, model: str, usage: ModelUsage, runtime: dict | None = None) -> None:
        """Count ``usage`` against ``model`` (thread-safe); ``runtime``: how
        the backend ran for this call, if it says (kept per model)."""
        with self.lock:
            self.by_model.setdefault(model, ModelUsage()).add(usage)
            if runtime is not None:
                self.runtime[model] = dict(runtime)

    def total(self) -> ModelUsage:
        """The usage of every model added together."""
        out = ModelUsage()
        for usage in self.by_model.values():
            out.add(usage)
        return out

    def to_dict(self) -> dict:
        """Usage per model name, sorted, as plain dicts (for run summaries)."""
        return {m: dataclasses.asdict(u) for m, u in sorted(self.by_model.items())}


_METERS: contextvars.ContextVar[tuple[UsageMeter, ...]] = contextvars.ContextVar("aidsafe_meters", default=())
_SAMPLE: contextvars.ContextVar[int] = contextvars.ContextVar("aidsafe_sample", default=0)
_ATTEMPT: contextvars.ContextVar[int] = contextvars.ContextVar("aidsafe_attempt", default=0)
_TRUNCATED: contextvars.ContextVar[list | None] = contextvars.ContextVar("aidsafe_truncated", default=None)


@contextmanager
def watch_truncation():
    """Collect the text of answers cut off at max_tokens inside the block."""
    box: list[str] = []
    token = _TRUNCATED.set(box)
    try:
        yield box
    finally:
        _TRUNCATED.reset(token)


@contextmanager
def metering(meter: UsageMeter):
    """Count every LM call made inside the block into ``meter``."""
    token = _METERS.set(_METERS.get() + (meter,))
    try:
        yield meter
    finally:
        _METERS.reset(token)


@contextmanager
def parse_attempt(attempt: int):
    """Calls inside are retry ``attempt`` after a parse failure: a retry must
    reach the model, not replay the cached malformed answer."""
    token = _ATTEMPT.set(attempt)
    try:
        yield
    finally:
        _ATTEMPT.reset(token)


@contextmanager
def sample_index(index: int):
    """Calls inside get sample index ``index``: n samples of the same prompt
    are cached as n different answers."""
    token = _SAMPLE.set(index)
    try:
        yield
    finally:
        _SAMPLE.reset(token)


# ------------------------------------------------------------------- engines

class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits over a sliding
    60-second window, shared by every thread calling one model."""

    WINDOW = 60.0

    def __init__(self, rpm: int | None = None, tpm: int | None = None, clock=time.monotonic, sleep=time.sleep):
        self.rpm, self.tpm = rpm, tpm
        self._events: deque[list] = deque()  # [time, tokens]
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def acquire(self) -> list:
        """Block until a request may start; returns its slot for :meth:`settle`."""
        while True:
            with self._lock:
                now = self._clock()
                while self._events and self._events[0][0] <= now - self.WINDOW:
                    self._events.popleft()
                full = (self.rpm is not None and len(self._events) >= self.rpm) or (
                    self.tpm is not None and sum(e[1] for e in self._events) >= self.tpm)
                if not full or not self._events:
                    slot = [now, 0]
                    self._events.append(slot)
                    return slot
                wait = self._events[0][0] + self.WINDOW - now
            self._sleep(max(wait, 0.01))

    def settle(self, slot: list, tokens: int) -> None:
        with self._lock:
            slot[1] = tokens


def _runtime_of(backend: Any) -> dict | None:
    """How ``backend`` runs (``runtime()``: a local model's threads and poll), or None."""
    runtime = getattr(backend, "runtime", None)
    return runtime() if callable(runtime) else None


class CachingEngine:
    """Wraps a backend engine: call-level cache, concurrency bound, rate
    limits, usage accounting. Cache hits skip the limits."""

    def __init__(self, name: str, inner: Any, identity: dict, cache: Cache, concurrency: int | None = None,
                 rpm: int | None = None, tpm: int | None = None):
        self.name = name
        self.inner = inner
        self.identity = identity
        self.cache = cache
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None
        self._limiter = RateLimiter(rpm, tpm) if (rpm or tpm) else None
        # Calls answered (cache hits included) and calls that raised, with
        # the last error: callers that swallow errors (GEPA's reflection)
        # can still tell a model that never answered.
        self.answered = 0
        self.failed = 0
        self.last_error: BaseException | None = None
        self._counts = threading.Lock()

    # DSPy reads capability hints from a custom engine (e.g. whether JSON
    # schemas may be sent for constrained decoding): pass the backend's on.
    @property
    def supports_response_schema(self) -> bool:
        return bool(getattr(self.inner, "supports_response_schema", False))

    @property
    def supports_function_calling(self) -> bool:
        return bool(getattr(self.inner, "supports_function_calling", False))

    @property
    def supported_params(self) -> frozenset:
        return frozenset(getattr(self.inner, "supported_params", ()) or ())

    def key_material(self, request) -> dict:
        """Exactly what changes the answer: model identity (with endpoint),
        rendered messages, sampling parameters, sample index, key version.
        Never timeouts, retries or API keys (those are not in the request)."""
        body = request_to_dict(request)
        body.pop("model", None)  # the LM's name is a label; identity says what answers
        material = {"v": CALL_KEY_VERSION, "model": self.identity, "request": body, "sample": _SAMPLE.get()}
        if _ATTEMPT.get():
            material["attempt"] = _ATTEMPT.get()
        return material

    def call_key(self, request) -> str:
        """The cache key of ``request``: sha256 of :meth:`key_material`."""
        return sha256_of(self.key_material(request))

    def complete(self, request) -> Response:
        """Answer from the cache, or call the backend within the limits and cache
        the answer (a truncated one is reported, never cached)."""
        key = self.call_key(request) if self.cache.enabled else None
        hit = self.cache.get_call(key) if key is not None else None
        if hit is not None:
            try:
                response = response_from_dict(hit["response"])
                # The reader is lenient (parts: "zz" reads as one part per
                # letter): an entry must read back to exactly what it holds.
                if response_to_dict(response) != hit["response"]:
                    raise ValueError("the stored answer does not have the shape of an answer")
                # A replayed answer costs no time now; its tokens still describe the record.
                self._account(response, 0.0, cached=True)
                return response
            except Exception as exc:  # an entry from an incompatible version, or tampered: drop it, recompute
                self.cache.drop_call(key, f"model {self.name}: {exc}")
        sample = _SAMPLE.get()
        if request.config.seed is None and getattr(self.inner, "derives_seed", False):
            # A server samples with a fresh random seed per request unless
            # given one: derive it from the call key (prompt, parameters,
            # sample index), so n samples at temperature > 0 differ from each
            # other and are the same on every rerun.
            seed = int((key or self.call_key(request))[:8], 16) & 0x7FFFFFFF
            request = dataclasses.replace(request, config=dataclasses.replace(request.config, seed=seed))
        elif sample and ("seed" in self.supported_params or getattr(self.inner, "derives_seed", False)):
            # n samples of one prompt must differ even where the backend
            # decodes deterministically for a fixed seed (llama.cpp).
            base = request.config.seed or 0
            request = dataclasses.replace(request, config=dataclasses.replace(request.config, seed=base + sample))
        slot = self._limiter.acquire() if self._limiter is not None else None
        started = time.perf_counter()
        try:
            with progress.working(f"LM call {self.name}"):
                if self._slots is not None:
                    with self._slots:
                        response = self.inner.complete(request)
                else:
                    response = self.inner.complete(request)
        except Exception as exc:
            with self._counts:
                self.failed += 1
                self.last_error = exc
            raise
        seconds = time.perf_counter() - started
        if slot is not None:
            usage = response.usage
            self._limiter.settle(slot, (getattr(usage, "input_tokens", 0) or 0) + (getattr(usage, "output_tokens", 0) or 0))
        if response.finish_reason == "length":
            # Cut off at max_tokens: tell the agent, and never cache it as an answer.
            box = _TRUNCATED.get()
            if box is not None:
                box.append(response.text or "")
        else:
            response, stored = _without_secrets(response)
            if key is not None:
                self.cache.put_call(key, {"response": stored, "seconds": seconds})
        self._account(response, seconds, cached=False)
        timings = (response.provider_data or {}).get("timings") if isinstance(response.provider_data, dict) else None
        progress.lm_call(self.name, getattr(response.usage, "output_tokens", 0) or 0, seconds,
                         (timings or {}).get("predicted_per_second"))  # llama.cpp's generation speed
        return response

    def _account(self, response: Response, seconds: float, cached: bool) -> None:
        with self._counts:
            self.answered += 1
        usage = response.usage
        entry = ModelUsage(calls=1, cached_calls=int(cached),
                           input_tokens=getattr(usage, "input_tokens", 0) or 0,
                           output_tokens=getattr(usage, "output_tokens", 0) or 0,
                           seconds=seconds, cached_input_tokens=getattr(usage, "cache_read_tokens", 0) or 0)
        # A cache hit ran on no backend now: only a real call says how it ran.
        runtime = None if cached else _runtime_of(self.inner)
        for meter in _METERS.get():
            meter.record(self.name, entry, runtime)

    def stream(self, request):
        """Events of the complete answer (DSPy's streaming contract)."""
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Nothing to free: the backend outlives this wrapper."""


# Endpoint variables read where a remote model names no api_base: LiteLLM
# reads PROVIDER_API_BASE (and OpenAI's SDK spelling OPENAI_BASE_URL), DSPy
# sends PREFIX_BASE_URL/PREFIX_API_BASE models to LiteLLM, and its native
# clients read the Azure and Foundry endpoints.
_ENDPOINT_ENV_ALIASES = {
    "azure": ("AZURE_OPENAI_ENDPOINT",),
    "azure_ai": ("AZURE_AI_API_BASE",),
    "anthropic": ("ANTHROPIC_FOUNDRY_BASE_URL",),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
}


def endpoint_from_env(model: str) -> str | None:
    """The endpoint a remote ``model`` string reaches because of environment
    variables (``OPENAI_BASE_URL`` for ``openai/...``, ``HOSTED_VLLM_API_BASE``
    for ``hosted_vllm/...``), or None when none is set. It is part of the
    model's identity, so the cache never replays one server's answers for
    another. Several variables set to different values are all kept."""
    provider = model.split("/", 1)[0].lower() if "/" in model else "openai"
    prefix = provider.upper()
    names = (f"{prefix}_BASE_URL", f"{prefix}_API_BASE", *_ENDPOINT_ENV_ALIASES.get(provider, ()))
    found = {name: os.environ[name].strip() for name in dict.fromkeys(names) if os.environ.get(name, "").strip()}
    values = set(found.values())
    if len(values) > 1:
        return ", ".join(f"{name}={value}" for name, value in sorted(found.items()))
    return values.pop() if values else None


def _without_secrets(response: Response) -> tuple[Response, dict]:
    """``response`` with every configured key value (a key the server echoed
    in its answer) replaced, before it is cached or used; and its dict form."""
    data = response_to_dict(response)
    clean = redact_values(data)
    if clean is data or clean == data:
        return response, data
    return response_from_dict(clean), clean


class RemoteEngine:
    """Any ``dspy.LM`` model string, sent through DSPy's own clients
    (LiteLLM or lm15), with the key read from an environment variable.

    Transient errors (timeouts, connection resets, 429, 5xx) are retried here
    with exponential backoff and full jitter, honouring Retry-After, so many
    workers hitting one rate limit spread out instead of retrying in lockstep.
    """

    BACKOFF_BASE = 0.5
    BACKOFF_CAP = 30.0

    def __init__(self, spec: ModelSpec):
        register_secret_env(spec.api_key_env)
        # LiteLLM fetches its model cost map from GitHub when first imported
        # unless told to use its bundled copy; set before any call can import
        # it, so building a model never touches the network. setdefault: a
        # user's own choice wins. (Importing aidsafe sets nothing.)
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        kwargs: dict[str, Any] = {}
        if spec.api_base:
            kwargs["api_base"] = spec.api_base
            strip_userinfo(spec.api_base)  # its password, if any, is a secret from now on
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise ModelError(f"model {spec.name!r} ({spec.model}) reads its API key from ${spec.api_key_env}, "
                                 f"which is not set; export {spec.api_key_env}=... before running")
            kwargs["api_key"] = key
        elif spec.api_base:
            kwargs["api_key"] = "not-needed"  # local servers (vLLM, llama.cpp) accept any key
        # Never wait forever: a server that accepts and never answers fails
        # the call after the timeout (then the bounded retries below).
        kwargs["timeout"] = spec.timeout or DEFAULT_TIMEOUT
        self.spec = spec
        self.retries = spec.num_retries if spec.num_retries is not None else 4
        self.lm = dspy.LM(spec.model, cache=False, num_retries=0, **kwargs)
        self.sleep = time.sleep
        self._takes_seed: bool | None = None

    @property
    def derives_seed(self) -> bool:
        """Whether requests carry a seed: the provider takes one (OpenAI-style
        servers, vLLM, Ollama; not Anthropic's Messages API)."""
        if self._takes_seed is None:
            try:
                self._takes_seed = "seed" in self.lm.supported_params
            except Exception:  # an unknown provider: send nothing it may refuse
                self._takes_seed = False
        return self._takes_seed

    def identity(self) -> dict:
        api_base = self.spec.api_base or endpoint_from_env(self.spec.model) or "(provider default)"
        # No user or password in an identity: it goes into provenance and cache keys.
        return {"backend": "remote", "model": self.spec.model, "api_base": strip_userinfo(api_base)}

    def complete(self, request) -> Response:
        request = dataclasses.replace(request, model=self.lm.model)
        for attempt in range(self.retries + 1):
            try:
                return self._send_within(request, attempt)
            except Exception as exc:
                timed_out = isinstance(exc, CallTimeout) or isinstance(exc, TimeoutError) \
                    or "timeout" in type(exc).__name__.lower()
                if attempt >= self.retries or not (timed_out or is_transient(exc)):
                    if timed_out and not isinstance(exc, CallTimeout):
                        raise self._timeout(attempt) from exc  # name the recipe key, not the library's knob
                    raise
                self.sleep(self.backoff(attempt, getattr(exc, "retry_after", None)))
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def timeout(self) -> float:
        return float(self.spec.timeout or DEFAULT_TIMEOUT)

    def _timeout(self, attempt: int) -> CallTimeout:
        name = self.spec.name
        return CallTimeout(f"model {name!r} ({self.spec.model}) did not finish a call within its timeout of "
                           f"{self.timeout:g}s (attempt {attempt + 1} of {self.retries + 1}); if the server is "
                           f"slow but alive, raise `timeout:` of that model (models.{name}.timeout in the recipe "
                           f"or judges file)")

    def _send_within(self, request, attempt: int) -> Response:
        """:meth:`_send` bounded as a whole by the model's ``timeout``: the
        HTTP client's own timeout only bounds the wait for each next byte,
        so a server trickling one byte a second would hold it for ever. The
        attempt runs in a helper thread; past the deadline it is abandoned
        (its socket still closes at the client's idle timeout or when the
        server stops) and the call fails as a timeout."""
        outcome: list = []
        context = contextvars.copy_context()  # DSPy's settings and the run's meter travel with the call

        def attempt_call() -> None:
            try:
                outcome.append((True, context.run(self._send, request)))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append((False, exc))

        worker = threading.Thread(target=attempt_call, name="aidsafe-call", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not outcome:
            raise self._timeout(attempt)
        ok, value = outcome[0]
        if ok:
            return value
        raise value

    def _send(self, request) -> Response:
        """One request to the provider. The caching engine is already the
        one ``dspy.LM`` layer agents call (callbacks, history, usage), so the
        request goes straight to the provider client DSPy selects for this
        model, with DSPy's error mapping, instead of through a second
        ``dspy.LM`` call: that layer's history, usage tracking and price
        lookup (a scan of DSPy's model table for a model it does not know,
        about 1 ms of CPU per call) are all unused here. Where DSPy does not
        offer that path (another version, a LiteLLM-only route, streaming),
        the request goes through ``self.lm`` as before."""
        if _DIRECT is not None and dspy.settings.send_stream is None:
            prepare, select, boundary = _DIRECT
            with boundary(self.lm.model):
                backend, canonical, provider = select(self.lm, prepare(self.lm, request, None, {}), False)
            if canonical is not None and callable(getattr(backend, "complete", None)):
                with boundary(self.lm.model, provider=provider, unexpected=True):
                    return backend.complete(canonical)
        return self.lm(request)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``attempt + 1``."""
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), RETRY_AFTER_CAP) + random.uniform(0, 0.1 * self.BACKOFF_BASE)
        return random.uniform(0, min(self.BACKOFF_CAP, self.BACKOFF_BASE * 2 ** attempt))


class CallTimeout(ModelError, TimeoutError):
    """A remote call that did not finish within its model's ``timeout``."""


def _direct_path():
    """DSPy's own steps for one request (prepare it, select the provider
    client, map its errors), or None where this DSPy lacks them: then
    :meth:`RemoteEngine._send` goes through the public ``dspy.LM`` call,
    which sends the same request (tests/models/test_dspy_fallbacks.py)."""
    try:
        from dspy.clients.errors import error_boundary
        from dspy.clients.execution import _select_engine, prepare
    except ImportError:  # another DSPy layout: the LM path still works
        return None
    return prepare, _select_engine, error_boundary


_DIRECT = _direct_path()


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed if sent again: DSPy's transient
    classes (rate limits, timeouts, 5xx, transport), decided by the HTTP
    status where the provider sent one. Only 401/403 are authentication
    failures: providers and LiteLLM also file a 5xx whose message mentions
    an API key as one, and a 5xx is the server's fault, so it is retried. A
    2xx that raised is a reply that could not be read (an HTML page from a
    proxy, a cut-off body): also transient. Billing errors and other 4xx
    are not."""
    from dspy.utils.exceptions import LMBillingError, is_retryable_lm_error

    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(exc, LMBillingError):
        if status in (401, 403):
            return False
        if 200 <= status < 300 or status in (408, 429) or status >= 500:
            return True
    return is_retryable_lm_error(exc)


def _local_engine(spec: ModelSpec):
    from aidsafe._util.paths import weights_dir
    from aidsafe.models.local import LlamaCppEngine, resolve_local
    from aidsafe.models.local._engine import PROMPT_CACHE_MIB
    from aidsafe.models.local._speculative import parse_speculative
    from aidsafe.models.local._threads import AUTO, DEFAULT_POLL

    ref = spec.model.split(":", 1)[1]
    model = resolve_local(ref, weights_dir())
    # The effective size: a role that leaves it unset and one that names the
    # default share one loaded model (and one prompt cache), not two.
    cache_mib = PROMPT_CACHE_MIB if spec.prompt_cache_mib is None else spec.prompt_cache_mib
    threads = AUTO if spec.threads is None else spec.threads
    poll = DEFAULT_POLL if spec.poll is None else spec.poll
    try:
        speculative = parse_speculative(spec.speculative, spec.model)
    except ModelError as exc:
        raise ModelError(f"model {spec.name!r}: {exc}") from None
    draft = resolve_local(speculative.draft, weights_dir()) if speculative is not None and speculative.draft else None
    key = (str(model.path), spec.context or 4096, threads, poll, spec.repeat_penalty or 1.1, cache_mib,
           speculative, None if draft is None else str(draft.path))
    with _LOCAL_LOCK:
        # One loaded copy per process, shared by every role that names it; its
        # prompt cache keeps each role's stable prefix warm.
        if key not in _LOCAL_ENGINES:
            _LOCAL_ENGINES[key] = LlamaCppEngine(model, n_threads=threads, poll=poll, n_ctx=spec.context or 4096,
                                                 repeat_penalty=spec.repeat_penalty or 1.1, prompt_cache_mib=cache_mib,
                                                 speculative=speculative, draft=draft)
        return _LOCAL_ENGINES[key]


# Third-party backends: ``model: NAME:rest`` where NAME is an entry point of
# the group ``aidsafe.backends`` whose object is a factory ``spec -> engine``.
BACKENDS: Registry[Callable[[ModelSpec], Any]] = Registry("model backend", entry_points="aidsafe.backends")


def backend_for(spec: ModelSpec) -> Any:
    """The uncached engine a model spec names: ``local:``, ``mock``, ``fake:``, a
    plugin's ``NAME:`` (entry point group ``aidsafe.backends``), else a
    remote model string for DSPy's clients (``openai/...``, ``hosted_vllm/...``)."""
    if spec.model.startswith("local:"):
        return _local_engine(spec)
    if is_mock(spec.model):
        from aidsafe.testing.fake import DryRunEngine

        return DryRunEngine()
    if spec.model.startswith("fake:"):
        name = spec.model.split(":", 1)[1]
        if name not in _ENGINE_FACTORIES:
            raise ModelError(f"model {spec.name!r}: no in-process engine named {name!r} is registered "
                             "(fake:NAME models exist only in tests and benchmarks)")
        return _ENGINE_FACTORIES[name](spec)
    if not is_remote(spec.model):
        return BACKENDS.get(spec.model.partition(":")[0])(spec)
    return RemoteEngine(spec)


MOCK = "mock"  # the scripted dry-run model (`--dry-run` is `--model '*=mock'`)


def is_mock(model: str) -> bool:
    """Whether a model string names the scripted dry-run model, ``mock``."""
    return model.strip() == MOCK


def is_remote(model: str) -> bool:
    """Whether a model string is sent to a server by DSPy's clients (not
    ``local:``, ``fake:``, ``mock`` or a plugin backend's ``NAME:``)."""
    if model.startswith(("local:", "fake:")) or is_mock(model):
        return False
    scheme, colon, _ = model.partition(":")
    return not (colon and "/" not in scheme and scheme in BACKENDS)


def model_identity(spec: ModelSpec, backend: Any) -> dict:
    """What the backend says changes its answers (``identity()``), or the model string."""
    identity = backend.identity() if hasattr(backend, "identity") else {"model": spec.model}
    return dict(identity)


@dataclass
class ModelHandle:
    """A built model: its spec, the ``dspy.LM`` agents use, and its identity."""

    spec: ModelSpec
    lm: dspy.LM
    engine: CachingEngine

    @property
    def identity(self) -> dict:
        return self.engine.identity


def parse_override(text: str) -> tuple[str, str]:
    """``ROLE=MODEL`` from ``--model``."""
    if "=" not in text:
        raise ModelError(f"--model {text!r}: expected NAME=MODEL, e.g. --model default=local:smoke")
    name, model = text.split("=", 1)
    return name.strip(), model.strip()


ALL_MODELS = "*"  # `--model '*=MODEL'`: every model of the recipe


def expand_all(specs: dict, overrides: dict[str, str] | None) -> dict[str, str]:
    """``--model '*=MODEL'`` as one override per model in ``specs`` (a model
    named on its own keeps its own override)."""
    overrides = dict(overrides or {})
    if ALL_MODELS not in overrides:
        return overrides
    every = overrides.pop(ALL_MODELS)
    return {**{name: every for name in specs}, **overrides}


def apply_overrides(specs: dict[str, ModelSpec], overrides: dict[str, str] | None,
                    api_base: str | None = None) -> dict[str, ModelSpec]:
    """``specs`` with model strings replaced by ``--model NAME=MODEL``
    overrides (``*=MODEL``: every model not named on its own), then every
    remote model pointed at ``api_base`` (``--api-base``)."""
    overrides = expand_all(specs, overrides)
    unknown = [n for n in overrides if n not in specs]
    if unknown:
        from aidsafe._util.registry import suggest

        raise ModelError(f"--model names {unknown[0]!r}, which is not in the recipe's models"
                         f"{suggest(unknown[0], list(specs))}; models: {', '.join(specs)}")
    specs = {name: dataclasses.replace(spec, model=overrides[name]) if name in overrides else spec
             for name, spec in specs.items()}
    if api_base:
        remote = [name for name, spec in specs.items() if is_remote(spec.model)]
        if not remote:
            raise ModelError(f"--api-base {api_base}: no model is remote ("
                             + ", ".join(f"{n}: {s.model}" for n, s in specs.items())
                             + "); it points remote models (openai/NAME, hosted_vllm/NAME) at a server, e.g. "
                             f"--model default=openai/NAME --api-base {api_base}")
        specs = {name: dataclasses.replace(spec, api_base=api_base) if name in remote else spec
                 for name, spec in specs.items()}
    return specs


# Sampling parameters a spec may set on its ``dspy.LM`` (they go into call keys).
LM_PARAMS = ("temperature", "top_p", "max_tokens", "seed")


def make_handle(spec: ModelSpec, backend: Any, cache: Cache, *, name: str | None = None) -> ModelHandle:
    """The one way a model becomes a :class:`ModelHandle`.

    ``backend`` (from :func:`backend_for`, a registered engine, or an
    inspection stand-in) is wrapped in a :class:`CachingEngine` keyed by its
    identity and the spec's limits, under a ``dspy.LM`` named
    ``aidsafe/<name>`` (``name`` defaults to ``spec.name``) that carries the
    spec's sampling parameters. DSPy's own cache and retries are off: the
    caching engine and the backend own them.
    """
    name = spec.name if name is None else name
    register_secret_env(spec.api_key_env)  # its value never reaches a record, log or error
    identity = model_identity(spec, backend)
    engine = CachingEngine(name, backend, identity, cache, concurrency=spec.concurrency, rpm=spec.rpm, tpm=spec.tpm)
    params = {k: v for k, v in spec.params.items() if k in LM_PARAMS}
    lm = dspy.LM(f"aidsafe/{name}", engine=engine, cache=False, num_retries=0, **params)
    return ModelHandle(spec=spec, lm=lm, engine=engine)


def build_models(specs: dict[str, ModelSpec], cache: Cache, overrides: dict[str, str] | None = None,
                 api_base: str | None = None) -> dict[str, ModelHandle]:
    """Build every model in ``specs`` (``overrides`` replaces model strings,
    ``api_base`` the endpoint of every remote model)."""
    return {name: make_handle(spec, backend_for(spec), cache, name=name)
            for name, spec in apply_overrides(specs, overrides, api_base).items()}
