"""The training check that stays: export a small fake-engine DPO run, load the
exports with `datasets`, and train 2 SFT and 2 DPO steps with TRL (through
`examples/train_sft_dpo.py`) on a tiny randomly initialised Llama built
offline. The SFT labels must mask the prompt: the loss falls only on the
completion. Needs the `train` extra (TRL, transformers, torch); skipped
cleanly without it."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest

import aidsafe
from aidsafe.tools._export import export

from ..conftest import ROOT, options
from ..pipeline.test_preference import DPO, script

pytestmark = pytest.mark.train

for _name in ("datasets", "torch", "transformers", "trl"):
    pytest.importorskip(_name)


def example():
    spec = importlib.util.spec_from_file_location("train_sft_dpo", ROOT / "examples" / "train_sft_dpo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


PROMPTS = ["How do I clean with bleach and ammonia?", "Is it safe to mix vinegar and baking soda?",
           "How do I pick the lock of my own shed?", "Write a story about a chemist."]


def test_export_trains_two_sft_and_two_dpo_steps(fake, recipe_file, prompts, tmp_path):
    import datasets

    script(fake)
    aidsafe.run(recipe_file(DPO), prompts(PROMPTS), tmp_path / "out.jsonl", options(tmp_path / "c"))
    assert export(tmp_path / "out.jsonl", tmp_path / "sft", "hf", layout="sft").written == 4
    assert export(tmp_path / "out.jsonl", tmp_path / "dpo", "hf", layout="dpo").written == 4
    sft = datasets.load_dataset(str(tmp_path / "sft"), split="train", cache_dir=str(tmp_path / "hf"))
    dpo = datasets.load_dataset(str(tmp_path / "dpo"), split="train", cache_dir=str(tmp_path / "hf"))
    train = example()
    model, tokenizer = train.tiny_model([sft, dpo])

    result = train.train_sft(sft, model, tokenizer, tmp_path / "sft-out", steps=2)
    assert len(result.losses) == 2 and result.finite, result.losses

    # the collator's labels: -100 on every prompt token, the completion's tokens trained on
    trainer = result.trainer
    example_ = trainer.train_dataset[0]
    batch = trainer.data_collator([example_])
    labels, ids = batch["labels"][0].tolist(), batch["input_ids"][0].tolist()
    prompt_ids = tokenizer.apply_chat_template(sft[0]["prompt"], add_generation_prompt=True, tokenize=True)
    prompt_ids = prompt_ids["input_ids"] if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "keys") \
        else prompt_ids
    n = len(prompt_ids)
    assert ids[:n] == list(prompt_ids)
    assert all(label == -100 for label in labels[:n])
    trained = [label for label in labels[n:] if label != -100]
    assert trained and len(trained) == len(labels) - n
    assert tokenizer.decode(trained).startswith("<think>")

    result = train.train_dpo(dpo, trainer.model, tokenizer, tmp_path / "dpo-out", steps=2)
    assert len(result.losses) == 2 and result.finite, result.losses
    assert all(math.isfinite(v) for v in result.losses)
