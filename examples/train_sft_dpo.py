"""Train on an aidsafe export with TRL: SFT steps, then DPO steps.

    aidsafe run aidsafe-dpo -i prompts.jsonl -o out/dpo.jsonl
    aidsafe export out/sft -i out/dpo.jsonl --format hf --layout sft --test-size 0.1
    aidsafe export out/dpo -i out/dpo.jsonl --format hf --layout dpo --test-size 0.1
    python examples/train_sft_dpo.py --sft out/sft --dpo out/dpo --model HuggingFaceTB/SmolLM2-135M-Instruct
    python examples/train_sft_dpo.py --sft out/sft --dpo out/dpo --model tiny --steps 2   # offline smoke check

The SFT rows are in TRL's prompt-completion layout, so the loss falls on the
completion only (the CoT and response), never on the prompt. ``--model tiny``
builds a tiny randomly initialised Llama and a byte-level BPE tokenizer from
the data itself: no download, a check that the data trains, not a model.
Needs ``pip install 'aidsafe[export,train]'`` (datasets, TRL, transformers,
torch).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

# ChatML, as in Qwen and SmolLM2; the prompt with a generation prompt is a
# prefix of prompt + completion, which TRL's prompt-completion path requires.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<pad>"]


@dataclass
class TrainResult:
    """One training run: its per-step losses and the trainer (for inspection)."""

    losses: list
    trainer: object

    @property
    def finite(self) -> bool:
        """Every logged loss is a finite number."""
        return bool(self.losses) and all(math.isfinite(loss) for loss in self.losses)


def _texts(datasets_: list) -> list[str]:
    texts = []
    for dataset in datasets_:
        for row in dataset:
            for key in ("prompt", "completion", "chosen", "rejected", "messages"):
                texts += [m["content"] for m in row.get(key) or []]
    return texts


def tiny_model(datasets_: list, vocab_size: int = 512, seed: int = 0):
    """A tiny random Llama and a byte-level BPE tokenizer trained on the rows
    of ``datasets_``, with a ChatML chat template; built offline."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(_texts(datasets_), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<pad>",
                                        bos_token=None)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, tie_word_embeddings=True)
    return LlamaForCausalLM(config), tokenizer


def load_model(name: str):
    """A model and its tokenizer by name or folder (``transformers``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(name), tokenizer


def _common(output_dir: Path, steps: int, batch_size: int) -> dict:
    return dict(output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
                learning_rate=1e-3, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
                bf16=False, fp16=False, disable_tqdm=True, max_length=1024, seed=0)


def _losses(trainer) -> list[float]:
    return [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]


def train_sft(dataset, model, tokenizer, output_dir: Path, steps: int = 2, batch_size: int = 2) -> TrainResult:
    """``steps`` SFT steps with TRL's SFTTrainer on prompt-completion rows."""
    from trl import SFTConfig, SFTTrainer

    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=dataset,
                         args=SFTConfig(**_common(output_dir, steps, batch_size)))
    trainer.train()
    return TrainResult(_losses(trainer), trainer)


def train_dpo(dataset, model, tokenizer, output_dir: Path, steps: int = 2, batch_size: int = 2) -> TrainResult:
    """``steps`` DPO steps with TRL's DPOTrainer (the reference model is a
    frozen copy of ``model``)."""
    import copy

    from trl import DPOConfig, DPOTrainer

    # An explicit copy: TRL would reload the reference from model.name_or_path, which a model built in
    # memory does not have.
    reference = copy.deepcopy(model).eval()
    trainer = DPOTrainer(model=model, ref_model=reference, processing_class=tokenizer, train_dataset=dataset,
                         args=DPOConfig(beta=0.1, **_common(output_dir, steps, batch_size)))
    trainer.train()
    return TrainResult(_losses(trainer), trainer)


def main(argv: list[str] | None = None) -> None:
    """Command line: SFT on --sft, then DPO on --dpo, from one model."""
    from datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sft", required=True, help="an `aidsafe export --format hf --layout sft` folder")
    parser.add_argument("--dpo", required=True, help="an `aidsafe export --format hf --layout dpo` folder")
    parser.add_argument("--model", default="tiny", help="a model name or folder, or `tiny` (random, offline)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--output", default="train-out", help="folder for the trainers' output")
    args = parser.parse_args(argv)
    sft = load_dataset(args.sft, split="train")
    dpo = load_dataset(args.dpo, split="train")
    model, tokenizer = tiny_model([sft, dpo]) if args.model == "tiny" else load_model(args.model)
    result = train_sft(sft, model, tokenizer, Path(args.output) / "sft", args.steps)
    print(f"SFT losses: {result.losses}")
    result = train_dpo(dpo, result.trainer.model, tokenizer, Path(args.output) / "dpo", args.steps)
    print(f"DPO losses: {result.losses}")


if __name__ == "__main__":
    main()
