"""Does a chat template keep the CoT? The check behind ``aidsafe export
--thinking field --tokenizer PATH|NAME``.

With ``--thinking field`` the CoT sits in its own message key (such as
``reasoning_content``). Only chat templates that read that key put it into
the training text; others drop it without a word (SmolLM2's does: chosen and
rejected then differ by their responses alone). The check renders a probe
conversation through the target tokenizer's chat template, as TRL does when
it tokenizes, and looks for the probe's CoT in the text.

The template is rendered by ``transformers`` when it is installed (exactly
what the trainers use); otherwise a tokenizer *folder*'s template
(``chat_template.jinja`` or ``tokenizer_config.json``) is rendered with
Jinja2 in a sandbox, as ``transformers`` does. The fallback is the stricter
of the two: recent ``transformers`` also fills the ``thinking`` and
``reasoning`` aliases of ``reasoning_content``, the fallback only the key given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from aidsafe._util.errors import UserError

_PROBE_COT = "aidsafe-probe-thinking-7f3a"
_PROBE_ANSWER = "aidsafe-probe-answer-7f3a"
_MESSAGE_KEY = re.compile(r"""\bmessage(?:\.(\w+)|\[\s*['"](\w+)['"]\s*\])""")
_PLAIN_KEYS = {"role", "content", "tool_calls", "tool_call_id", "name", "get", "items", "keys", "values"}


@dataclass(frozen=True)
class TemplateCheck:
    """The outcome of rendering a probe through a chat template."""

    tokenizer: str
    field: str
    keeps_thinking: bool  # the probe's CoT appears in the rendered text
    message_keys: tuple[str, ...]  # other message keys the template reads (candidates for --thinking-field)
    generation_markers: bool  # {% generation %}: what TRL's assistant_only_loss needs


def probe_messages(field: str) -> list[dict]:
    """A one-turn conversation whose assistant CoT sits in ``field``."""
    return [{"role": "user", "content": "aidsafe-probe-question"},
            {"role": "assistant", "content": _PROBE_ANSWER, field: _PROBE_COT}]


def check_thinking_template(tokenizer: str, field: str) -> TemplateCheck:
    """Render a conversation with the CoT in message key ``field`` through the
    chat template of ``tokenizer`` (a folder, or a model name ``transformers``
    finds in the local Hugging Face cache) and report whether the CoT survives."""
    if _transformers() is not None:
        loaded = _load_tokenizer(tokenizer)
        template = _one_template(tokenizer, getattr(loaded, "chat_template", None))

        def render(messages):
            return loaded.apply_chat_template(messages, tokenize=False)
    else:
        template = _one_template(tokenizer, _folder_template(tokenizer))

        def render(messages):
            return _render_jinja(template, messages)
    try:
        text = render(probe_messages(field))
    except Exception as exc:  # a template may raise_exception() on what it does not support
        raise UserError(f"--tokenizer {tokenizer}: its chat template failed on a user/assistant conversation "
                        f"({type(exc).__name__}: {exc})") from None
    keys = sorted({a or b for a, b in _MESSAGE_KEY.findall(template)} - _PLAIN_KEYS - {field})
    return TemplateCheck(tokenizer=tokenizer, field=field, keeps_thinking=_PROBE_COT in text,
                         message_keys=tuple(keys), generation_markers=_has_generation(template))


def refusal(check: TemplateCheck) -> str:
    """Why an export with ``--thinking field`` is refused for ``check``, and the fix."""
    hint = (f" (it reads the message key(s) {', '.join(check.message_keys)}: try --thinking-field "
            f"{check.message_keys[0]})") if check.message_keys else ""
    return (f"the chat template of {check.tokenizer} does not render the assistant message's "
            f"`{check.field}`: training on this export would drop the CoT and keep only the response. "
            f"Use --thinking tag (the CoT inside the content, which every template keeps){hint}, or a "
            "tokenizer whose template renders the key (Qwen3-style templates render reasoning_content)")


def _has_generation(template: str) -> bool:
    return re.search(r"{%-?\s*generation\s*-?%}", template) is not None


def _transformers():
    try:
        import transformers
    except ImportError:
        return None
    return transformers


def _load_tokenizer(name: str):
    transformers = _transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # OSError, ValueError, HTTP errors: all mean "cannot load it"
        raise UserError(f"--tokenizer {name}: cannot load a tokenizer ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); give a folder holding "
                        "tokenizer_config.json or a model name already in the Hugging Face cache") from None


def _one_template(name: str, template) -> str:
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        raise UserError(f"--tokenizer {name}: it has no chat template, so TRL cannot render conversational "
                        "rows with it; give the tokenizer of the chat model you train")
    return template


def _folder_template(name: str) -> str | None:
    folder = Path(name)
    if not folder.is_dir():
        raise UserError(f"--tokenizer {name}: not a folder; loading a tokenizer by name needs transformers "
                        "(pip install 'aidsafe[train]'), or give the folder holding tokenizer_config.json")
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        raise UserError(f"--tokenizer {name}: no chat_template.jinja or tokenizer_config.json in the folder")
    value = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    if isinstance(value, list):  # named templates: [{"name": "default", "template": "..."}]
        value = {item.get("name"): item.get("template") for item in value if isinstance(item, dict)}
    return value


def _render_jinja(template: str, messages: list[dict]) -> str:
    """Render like ``transformers`` does (sandboxed, trim/lstrip blocks, its
    helpers); ``{% generation %}`` blocks render their body."""
    from datetime import datetime

    from jinja2.ext import Extension
    from jinja2.nodes import CallBlock
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation])
    env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    return env.from_string(template).render(messages=messages, add_generation_prompt=False, bos_token="",
                                            eos_token="")
