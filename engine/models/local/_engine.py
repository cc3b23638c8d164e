"""The embedded model's engine: :class:`LlamaCppEngine` implements DSPy 3.4's
custom engine contract (``complete(Request) -> Response``) on top of
``xllamacpp.Server``, llama.cpp's own server embedded in the process.

The llama.cpp parameters and server start-up live here too; :mod:`._serve`
uses them to expose the same server over HTTP.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

from aidsafe._util import progress
from aidsafe._util.errors import ModelError
from aidsafe.models.local._special import special_tokens
from aidsafe.models.local._speculative import Speculation
from aidsafe.models.local._threads import AUTO, ThreadChoice, choose_threads
from aidsafe.models.local._weights import _INSTALL_LOCAL_HINT, LocalModel, _check_gguf, file_sha256

__all__ = ["SAMPLING_DEFAULTS", "LlamaCppEngine"]

# --------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------

# Sampling values sent when a request leaves them unset. They equal
# llama.cpp's own defaults but are pinned here so an xllamacpp upgrade that
# changes them cannot silently change outputs behind an unchanged identity.
SAMPLING_DEFAULTS: dict[str, float | int] = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}

# Config.extensions keys passed through to llama.cpp's request body. Anything
# else is refused (lm15's rule: never silently drop a knob).
_PASSTHROUGH_EXTENSIONS = frozenset({
    "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "dry_multiplier", "dry_base",
    "dry_allowed_length", "dry_penalty_last_n", "mirostat", "mirostat_tau", "mirostat_eta",
    "xtc_probability", "xtc_threshold", "grammar", "json_schema", "ignore_eos", "logit_bias",
    "n_keep", "cache_prompt", "samplers",
})

_FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_call", "content_filter": "content_filter"}


def _xllamacpp():
    try:
        import xllamacpp
    except ImportError as exc:
        raise ModelError(f"the local model backend needs xllamacpp: {_INSTALL_LOCAL_HINT} ({exc})") from exc
    return xllamacpp


# Host-RAM prompt cache for the in-process model: a role's prefix (instructions,
# demos, policies) is ~1-2k tokens, ~12-30 MB of KV on the shipped models, so
# 512 MiB keeps every role of any shipped recipe warm (measured: +44 MB RSS,
# evaluated prompt tokens 9,378 -> 3,226 over 12 calls of 4 alternating roles).
PROMPT_CACHE_MIB = 512


def _make_params(
    model: LocalModel,
    *,
    threads: ThreadChoice,
    n_ctx: int,
    n_parallel: int,
    repeat_penalty: float,
    seed: int,
    host: str,
    port: int,
    api_key: str | None,
    http_threads: int,
    prompt_ram_cache_mib: int,
    speculative: Speculation | None = None,
    draft: LocalModel | None = None,
):
    xlc = _xllamacpp()
    p = xlc.CommonParams()
    p.model.path = str(model.path)
    p.model_alias = {model.name}
    p.n_ctx = int(n_ctx)
    p.n_parallel = int(n_parallel)
    # With several slots, a unified KV cache lets any one request use the
    # whole context instead of n_ctx / n_parallel.
    p.kv_unified = n_parallel > 1
    # Generation (cpuparams) and prompt reading (cpuparams_batch) alike: both
    # spin on a busy machine the same way.
    for cpu in (p.cpuparams, p.cpuparams_batch):
        cpu.n_threads = int(threads.threads)
        cpu.poll = int(threads.poll)
    p.sampling.penalty_repeat = float(repeat_penalty)
    p.sampling.seed = int(seed)
    p.hostnames = [host]
    p.port = int(port)
    p.api_keys = [api_key] if api_key else []
    p.n_threads_http = int(http_threads)
    # Keep outputs deterministic and bounded: no automatic context fitting,
    # no context shifting (an oversized prompt is an error, not a silent
    # truncation), no warm-up pass, no web UI.
    p.fit_params = False
    p.ctx_shift = False
    p.warmup = False
    p.ui = False
    p.cache_ram_mib = int(prompt_ram_cache_mib)
    if n_parallel == 1:
        # One slot: always look in the prompt cache for the best prefix.
        # llama.cpp otherwise keeps the slot as it is when the new prompt
        # shares at least half of what the slot holds (two judges with the
        # same policies and fields, different rubrics), so the judge's own
        # prefix, restored one record earlier, is never looked for and the
        # other one's state is overwritten without being saved. With several
        # slots the similarity-based slot choice is what keeps roles warm.
        p.slot_prompt_similarity = 0.0
    if speculative is not None:
        speculative.apply(p, str(draft.path) if draft is not None else None, threads.threads, threads.poll)
    p.verbosity = 0
    return p


def _start_server(params, model: LocalModel):
    xlc = _xllamacpp()
    try:
        return xlc.Server(params)
    except RuntimeError as exc:
        raise ModelError(
            f"llama.cpp could not start model {model.name} from {model.path}: {exc} "
            "(a corrupt or unsupported GGUF, not enough memory, or the port is already in use)"
        ) from exc


def _text_of(parts, where: str) -> str:
    from dspy.lm15 import TextPart, ThinkingPart, UnsupportedFeatureError

    texts = []
    for part in parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ThinkingPart):
            continue  # earlier reasoning is not fed back to the model
        else:
            raise UnsupportedFeatureError(
                f"the llama.cpp engine only takes text; {where} has a {type(part).__name__}",
                feature=type(part).__name__, provider="llama.cpp",
            )
    return "\n".join(texts)


def _response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    """Translate lm15's response_format to the shape llama.cpp's server reads."""
    kind = fmt.get("type")
    if kind == "json_schema":
        inner = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
        schema = inner.get("schema")
        if schema is None:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": inner.get("name", "output"), "schema": schema}}
    return dict(fmt)


class LlamaCppEngine:
    """DSPy custom engine running a GGUF model in-process with llama.cpp.

    Use as ``dspy.LM("local/<name>", engine=LlamaCppEngine(model))``. The model
    loads on the first call, so constructing is cheap. ``complete`` may be
    called from several threads: llama.cpp's server queues requests into
    ``n_parallel`` slots (continuous batching), no Python lock is held while
    generating.

    The engine declares structured-output support, so ``dspy.JSONAdapter``
    sends its JSON schema and llama.cpp constrains decoding to it (through
    llguidance); set ``structured_outputs=False`` to get plain JSON prompting.

    ``n_threads`` is ``"auto"`` (the default: the cores free when the model
    loads, see :mod:`._threads`) or a number; ``poll`` (0-100, default 0) is
    how long idle llama.cpp threads busy-wait. What was chosen is
    :meth:`runtime`, kept out of :meth:`identity`.

    ``speculative`` (a :class:`~._speculative.Speculation`) turns on
    speculative decoding: n-gram prompt lookup, or ``draft`` (the resolved
    draft model, of the same tokenizer family) proposing tokens. Greedy
    output stays the same; it is part of :meth:`identity` all the same.
    """

    def __init__(
        self,
        model: LocalModel,
        *,
        n_threads: int | str | None = AUTO,
        n_ctx: int = 4096,
        repeat_penalty: float = 1.1,
        seed: int = 0,
        n_parallel: int = 1,
        structured_outputs: bool = True,
        prompt_cache_mib: int = PROMPT_CACHE_MIB,
        poll: int | None = None,
        speculative: Speculation | None = None,
        draft: LocalModel | None = None,
    ):
        if n_ctx < 256:
            raise ModelError(f"n_ctx must be at least 256, got {n_ctx}")
        if n_parallel < 1:
            raise ModelError(f"n_parallel must be at least 1, got {n_parallel}")
        n_threads = AUTO if n_threads is None else n_threads
        if n_threads != AUTO and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise ModelError(f"n_threads must be 'auto' or at least 1, got {n_threads!r}")
        if poll is not None and not 0 <= poll <= 100:
            raise ModelError(f"poll must be 0-100, got {poll}")
        if speculative is not None and speculative.draft is not None and draft is None:
            raise ModelError(f"speculative decoding with draft {speculative.draft!r} needs the resolved draft model")
        self.model = model
        self.speculative = speculative
        self.draft = draft if speculative is not None and speculative.draft is not None else None
        self.n_threads = n_threads
        self.poll = poll
        # The threads and poll chosen when the model loaded (``auto`` looks at
        # the free cores then): provenance, never the identity.
        self.threads: ThreadChoice | None = None
        self.n_ctx = int(n_ctx)
        self.repeat_penalty = float(repeat_penalty)
        self.seed = int(seed)
        self.n_parallel = int(n_parallel)
        self.structured_outputs = bool(structured_outputs)
        self.prompt_cache_mib = int(prompt_cache_mib)
        # Capability hints read by dspy.clients.capabilities for custom engines.
        self.supports_response_schema = self.structured_outputs
        self.supported_params = frozenset(
            {"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "frequency_penalty", "presence_penalty"}
            | ({"response_format"} if self.structured_outputs else set())
        )
        self._lock = threading.Lock()
        self._server = None
        self.load_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------

    def _ensure_loaded(self):
        server = self._server
        if server is not None:
            return server
        with self._lock:
            if self._server is None:
                if not Path(self.model.path).is_file():
                    raise ModelError(f"model file {self.model.path} is gone; resolve the model again")
                threads = choose_threads(self.n_threads, self.poll)
                params = _make_params(
                    self.model, threads=threads, n_ctx=self.n_ctx, n_parallel=self.n_parallel,
                    repeat_penalty=self.repeat_penalty, seed=self.seed,
                    # llama.cpp always opens an HTTP listener next to the
                    # in-process API. Keep it on an ephemeral loopback port
                    # and behind a random key nobody knows, so it is inert.
                    host="127.0.0.1", port=0, api_key=secrets.token_urlsafe(32), http_threads=1,
                    # Each role's prompt starts with the same instructions and
                    # policy text for every record, but roles alternate in one
                    # slot: the host-RAM prompt cache keeps every role's prefix
                    # (llama.cpp restores the longest matching one), bounded
                    # far below llama.cpp's 8 GiB default.
                    prompt_ram_cache_mib=self.prompt_cache_mib,
                    speculative=self.speculative, draft=self.draft,
                )
                spec = f", speculative: {self.speculative.describe()}" if self.speculative is not None else ""
                progress.say(f"loading model {self.model.name} ({threads.describe()}{spec}) ...")
                t0 = time.perf_counter()
                server = _start_server(params, self.model)
                if self.draft is not None:
                    self._check_drafting(server)
                self._server = server
                self.load_seconds = time.perf_counter() - t0
                self.threads = threads
                progress.say(f"model {self.model.name} loaded in {self.load_seconds:.1f}s")
            return self._server

    # A continuation the draft model is all but certain of.
    _PROBE = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24"

    def _check_drafting(self, server) -> None:
        """llama.cpp logs a draft model it cannot use (another tokenizer)
        and carries on without speculation: make sure the draft drafts."""
        result = server.handle_completions({"prompt": self._PROBE, "n_predict": 8, "temperature": 0.0,
                                            "ignore_eos": True, "cache_prompt": False})
        timings = result.get("timings") if isinstance(result, dict) else None
        if not isinstance(timings, dict) or "draft_n" not in timings:
            raise ModelError(
                f"draft model {self.draft.name} ({self.draft.path}) does not draft for {self.model.name}: "
                "llama.cpp refused it, most likely because their tokenizers differ; name a draft of the same "
                "family (qwen-0.5b for qwen-1.5b), or use `speculative: {ngram: true}`"
            )

    def close(self) -> None:
        """Free the model. A later call loads it again.

        Calls already running keep their own reference to the native server,
        which is destroyed when the last of them returns.
        """
        with self._lock:
            self._server = None

    def identity(self) -> dict[str, Any]:
        """Everything that changes this engine's outputs, for cache keys.

        Thread count, poll and slot count are left out: they change speed,
        not the answer (up to floating-point batching noise); see :meth:`runtime`.
        """
        return {
            "backend": "llama.cpp",
            "model": self.model.name,
            "sha256": self.model.sha256,
            "n_ctx": self.n_ctx,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
            "sampling_defaults": dict(SAMPLING_DEFAULTS),
            # Only when set, so the keys of a model without it never change.
            **({"speculative": self.speculative.to_dict(self._draft_identity())} if self.speculative is not None else {}),
        }

    def _draft_identity(self) -> dict | None:
        return None if self.draft is None else {"name": self.draft.name, "sha256": self.draft.sha256}

    def runtime(self) -> dict[str, Any] | None:
        """How the loaded model runs (threads, poll, and what ``auto`` saw),
        for provenance; None before it loads."""
        if self.threads is None:
            return None
        out = self.threads.to_dict()
        if self.speculative is not None:
            out["speculative"] = self.speculative.describe()
        return out

    # DSPy saves a program's LM with dump_state/load_state when present.
    def dump_state(self) -> dict[str, Any]:
        """Serializable settings; the model is re-verified by hash on load."""
        return {
            "model": {"name": self.model.name, "path": str(self.model.path), "sha256": self.model.sha256},
            "n_threads": self.n_threads, "poll": self.poll, "n_ctx": self.n_ctx, "repeat_penalty": self.repeat_penalty,
            "seed": self.seed, "n_parallel": self.n_parallel, "structured_outputs": self.structured_outputs,
            **({"speculative": self.speculative.to_dict()} if self.speculative is not None else {}),
            **({"draft": {"name": self.draft.name, "path": str(self.draft.path), "sha256": self.draft.sha256}}
               if self.draft is not None else {}),
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        """Rebuild an engine from :meth:`dump_state`, refusing a changed model file."""
        kwargs = {k: state[k] for k in ("n_threads", "poll", "n_ctx", "repeat_penalty", "seed", "n_parallel", "structured_outputs") if k in state}
        if state.get("speculative"):
            from aidsafe.models.local._speculative import parse_speculative

            kwargs["speculative"] = parse_speculative(state["speculative"])
            if state.get("draft"):
                kwargs["draft"] = cls._verified(state["draft"])
        return cls(cls._verified(state["model"]), **kwargs)

    @staticmethod
    def _verified(m: dict) -> LocalModel:
        path = Path(m["path"])
        _check_gguf(path, m["name"])
        got = file_sha256(path)
        if got != m["sha256"]:
            raise ModelError(f"model file {path} has sha256 {got}, expected {m['sha256']}: it was replaced or is corrupt")
        return LocalModel(m["name"], path, m["sha256"])

    # -- requests ----------------------------------------------------------

    def _body(self, request) -> dict[str, Any]:
        from dspy.lm15 import UnsupportedFeatureError

        if request.tools:
            raise UnsupportedFeatureError("the llama.cpp engine does not run tools", feature="tools", provider="llama.cpp")
        messages: list[dict[str, str]] = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else _text_of(request.system, "the system prompt")
            messages.append({"role": "system", "content": system})
        for i, msg in enumerate(request.messages):
            if msg.role == "tool":
                raise UnsupportedFeatureError("the llama.cpp engine does not run tools", feature="tools", provider="llama.cpp")
            content = _text_of(msg.parts, f"message {i}")
            role = msg.role
            if role == "developer":
                # Chat templates accept a system message only first; later
                # developer instructions become a marked user turn.
                if all(m["role"] == "system" for m in messages):
                    role = "system"
                else:
                    role, content = "user", f"[developer]\n{content}"
            if role == "system" and messages and messages[-1]["role"] == "system":
                messages[-1]["content"] += "\n\n" + content
            else:
                messages.append({"role": role, "content": content})

        # A message's text never becomes a control token (`<|im_start|>system` in a prompt stays text).
        messages = special_tokens(self.model.path).escape_messages(messages)
        cfg = request.config
        if cfg.logprobs is not None or cfg.probabilities is not None:
            raise UnsupportedFeatureError("the llama.cpp engine does not return logprobs", feature="logprobs", provider="llama.cpp")
        if cfg.tool_choice is not None:
            raise UnsupportedFeatureError("the llama.cpp engine does not run tools", feature="tool_choice", provider="llama.cpp")
        body: dict[str, Any] = {
            "messages": messages,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed if cfg.seed is None else cfg.seed,
            "cache_prompt": True,
            **SAMPLING_DEFAULTS,
        }
        if cfg.max_tokens is not None:
            body["max_tokens"] = cfg.max_tokens
        for name in ("temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty"):
            value = getattr(cfg, name)
            if value is not None:
                body[name] = value
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.response_format is not None:
            body["response_format"] = _response_format(dict(cfg.response_format))
        for key, value in (cfg.extensions or {}).items():
            if key not in _PASSTHROUGH_EXTENSIONS:
                raise UnsupportedFeatureError(
                    f"the llama.cpp engine does not know Config.extensions[{key!r}]; known: {sorted(_PASSTHROUGH_EXTENSIONS)}",
                    feature=key, provider="llama.cpp",
                )
            body[key] = value
        return body

    def complete(self, request):
        """Run one chat completion and return a ``dspy.lm15.Response``.

        Failures raise dspy.lm15 errors: ContextLengthError when the prompt
        does not fit ``n_ctx``, InvalidRequestError for other rejected
        requests, ServerError for llama.cpp failures, UnsupportedFeatureError
        for tools, images and logprobs.
        """
        from dspy.clients.engines.base import validate_request
        from dspy.lm15 import Message, Response, TextPart, ThinkingPart, Usage

        validate_request(request)
        body = self._body(request)
        server = self._ensure_loaded()
        result = server.handle_chat_completions(body)
        if not isinstance(result, dict) or "error" in result or "choices" not in result:
            raise self._error(result)

        choice = result["choices"][0]
        msg = choice.get("message") or {}
        parts = []
        if msg.get("reasoning_content"):
            parts.append(ThinkingPart(msg["reasoning_content"]))
        parts.append(TextPart(msg.get("content") or ""))
        usage = result.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        return Response(
            id=result.get("id") or None,
            model=self.model.name,
            message=Message.assistant(parts),
            finish_reason=_FINISH_REASONS.get(choice.get("finish_reason") or "stop", "stop"),
            usage=Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                total_tokens=usage.get("total_tokens"),
                cache_read_tokens=cached,
            ),
            provider_data={"timings": result["timings"]} if isinstance(result.get("timings"), dict) else None,
        )

    def stream(self, request):
        """Stream events of a complete answer (generation is not incremental)."""
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def _error(self, result: Any) -> Exception:
        from dspy.lm15 import ContextLengthError, InvalidRequestError, ServerError

        err = result.get("error", result) if isinstance(result, dict) else {"message": repr(result)}
        if not isinstance(err, dict):
            err = {"message": str(err)}
        message = str(err.get("message") or err)
        code = err.get("code")
        status = code if isinstance(code, int) else None
        kind = err.get("type")
        if kind == "exceed_context_size_error":
            return ContextLengthError(f"{message} (engine n_ctx={self.n_ctx})", provider="llama.cpp", status=status)
        if status is not None and 400 <= status < 500:
            return InvalidRequestError(message, provider="llama.cpp", status=status, provider_code=kind)
        return ServerError(message, provider="llama.cpp", status=status, provider_code=kind)

    def __repr__(self) -> str:
        state = "loaded" if self._server is not None else "not loaded"
        return f"LlamaCppEngine({self.model.name}, n_ctx={self.n_ctx}, {state})"

