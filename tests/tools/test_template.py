"""`--thinking field --tokenizer PATH|NAME`: the export renders a probe through
the target chat template and refuses when the CoT would be dropped (as
SmolLM2's ChatML template drops `reasoning_content`). Tokenizer folders are
built here, offline; the check runs through transformers when it is
installed and through Jinja2 otherwise (both are tested)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aidsafe._util.errors import UserError
from aidsafe.cli._export import export_command
from aidsafe.tools import _template
from aidsafe.tools._export import export
from aidsafe.tools._template import check_thinking_template

from .test_export import make_record

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Qwen3-style: the assistant's reasoning_content is rendered inside <think>
QWEN3_LIKE = ("{% for message in messages %}<|im_start|>{{ message.role }}\n"
              "{% if message.role == 'assistant' and message.reasoning_content %}<think>\n"
              "{{ message.reasoning_content }}\n</think>\n\n{% endif %}{{ message.content }}<|im_end|>\n"
              "{% endfor %}")
# reads its own key (transformers 5 aliases reasoning_content/thinking/reasoning, not this one)
OWN_KEY = ("{% for message in messages %}{{ message.role }}: {% if message['cot'] is defined %}"
           "[{{ message['cot'] }}] {% endif %}{{ message.content }}\n{% endfor %}")
GENERATION = ("{% for message in messages %}{% if message.role == 'assistant' %}{% generation %}"
              "{{ message.content }}{% endgeneration %}{% else %}{{ message.content }}{% endif %}{% endfor %}")


def tokenizer_folder(path, template):
    """A word-level tokenizer saved the way transformers loads it, with ``template``."""
    tokenizers = pytest.importorskip("tokenizers")
    path.mkdir()
    vocab = {"<unk>": 0, "<|im_end|>": 1, "<pad>": 2}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<pad>",
        "unk_token": "<unk>", "chat_template": template}), encoding="utf-8")
    return path


@pytest.fixture(params=["transformers", "jinja2"])
def renderer(request, monkeypatch):
    """Run each check through transformers (when installed) and through the Jinja2 fallback."""
    if request.param == "transformers":
        pytest.importorskip("transformers")
    else:
        monkeypatch.setattr(_template, "_transformers", lambda: None)
    return request.param


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(make_record(r)) + "\n" for r in ("r1", "r2")), encoding="utf-8")
    return path


def test_chatml_drops_reasoning_content_and_the_export_is_refused(tmp_path, records, renderer):
    folder = tokenizer_folder(tmp_path / "smol", CHATML)
    check = check_thinking_template(str(folder), "reasoning_content")
    assert not check.keeps_thinking and not check.generation_markers
    with pytest.raises(UserError, match=r"does not render the assistant message's `reasoning_content`.*"
                                        r"drop the CoT.*Use --thinking tag"):
        export(records, tmp_path / "sft.jsonl", "sft", thinking="field", tokenizer=str(folder))
    assert not (tmp_path / "sft.jsonl").exists()
    # the tag keeps the CoT in the content, which every template renders
    summary = export(records, tmp_path / "sft.jsonl", "sft", tokenizer=str(folder))
    assert summary.written == 2 and not any("warning" in line for line in summary.lines())


def test_a_template_that_renders_the_field_passes(tmp_path, records, renderer):
    folder = tokenizer_folder(tmp_path / "qwen", QWEN3_LIKE)
    assert check_thinking_template(str(folder), "reasoning_content").keeps_thinking
    summary = export(records, tmp_path / "dpo.jsonl", "dpo", thinking="field", tokenizer=str(folder))
    assert summary.written == 2
    assert any("renders `reasoning_content`: the CoT is trained on" in line for line in summary.lines())


def test_refusal_names_the_key_the_template_reads(tmp_path, records, renderer):
    folder = tokenizer_folder(tmp_path / "t", OWN_KEY)
    check = check_thinking_template(str(folder), "reasoning_content")
    assert not check.keeps_thinking and check.message_keys == ("cot",)
    with pytest.raises(UserError, match="try --thinking-field cot"):
        export(records, tmp_path / "x.jsonl", "sft", thinking="field", tokenizer=str(folder))
    assert export(records, tmp_path / "x.jsonl", "sft", thinking="field", field="cot",
                  tokenizer=str(folder)).written == 2


def test_messages_layout_reports_generation_markers(tmp_path, records, renderer):
    folder = tokenizer_folder(tmp_path / "g", GENERATION)
    assert check_thinking_template(str(folder), "reasoning_content").generation_markers
    summary = export(records, tmp_path / "m.jsonl", "sft", messages=True, tokenizer=str(folder))
    assert any("has {% generation %} markers: assistant_only_loss=True works" in line for line in summary.lines())


@pytest.mark.parametrize("setup, message", [
    ("missing", "--tokenizer .*missing"),
    ("no_template", "it has no chat template"),
])
def test_tokenizer_errors(tmp_path, records, renderer, setup, message):
    target = tmp_path / "missing"
    if setup == "no_template":
        target = tokenizer_folder(tmp_path / "plain", None)
    with pytest.raises(UserError, match=message):
        export(records, tmp_path / "x.jsonl", "sft", thinking="field", tokenizer=str(target))


def test_cli_refuses_with_exit_1_and_warns_without_tokenizer(tmp_path, records):
    folder = tokenizer_folder(tmp_path / "smol", CHATML)
    runner = CliRunner()
    args = [str(tmp_path / "x.jsonl"), "-i", str(records), "--format", "sft", "--thinking", "field"]
    result = runner.invoke(export_command, args + ["--tokenizer", str(folder)])
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output
    assert "does not render" in result.output
    result = runner.invoke(export_command, args)
    assert result.exit_code == 0 and "warning: --thinking field" in result.output
