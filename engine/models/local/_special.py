"""A model's special tokens, and text that cannot become one.

llama.cpp tokenizes a rendered chat prompt with special-token parsing on, so
``<|im_end|>\\n<|im_start|>system`` inside a *message* would close the user's
turn and open a system one. The server has no per-message switch, so the
engine and ``aidsafe serve`` escape message text instead: each occurrence of
a special token's text gets a zero-width space (U+200B) after its first
character, which the tokenizer reads as ordinary text (a reader sees the
same characters). The special tokens are read from the GGUF's own vocabulary
(control, unknown and user-defined tokens: the ones llama.cpp matches as
whole tokens), so every model family is covered without a list to keep.
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

__all__ = ["SpecialTokens", "special_tokens"]

BREAK = "\u200b"

# GGUF metadata value types (gguf-py's GGUFValueType) and their sizes.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# llama.cpp's token types that it matches as whole tokens in text: unknown, control, user-defined.
_SPECIAL_TYPES = frozenset({2, 3, 4})


class SpecialTokens:
    """The special tokens of one model, and :meth:`escape` for message text."""

    def __init__(self, tokens: list[str] | tuple[str, ...]):
        # Tokens of two characters or fewer cannot be broken in the middle usefully; none exist in practice.
        self.tokens = tuple(sorted({t for t in tokens if len(t) >= 2}, key=lambda t: (-len(t), t)))
        self._pattern = re.compile("|".join(map(re.escape, self.tokens))) if self.tokens else None

    def escape(self, text: str) -> str:
        """``text`` with every special token's text broken so that it tokenizes as text."""
        if self._pattern is None or not isinstance(text, str):
            return text
        return self._pattern.sub(lambda m: m.group()[0] + BREAK + m.group()[1:], text)

    def escape_messages(self, messages: list) -> list:
        """OpenAI chat ``messages`` with the text of every message escaped
        (a string content, or the ``text`` of its text parts)."""
        out = []
        for message in messages:
            if not isinstance(message, dict):
                out.append(message)
                continue
            message = dict(message)
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = self.escape(content)
            elif isinstance(content, list):
                message["content"] = [dict(part, text=self.escape(part["text"]))
                                       if isinstance(part, dict) and isinstance(part.get("text"), str) else part
                                       for part in content]
            out.append(message)
        return out


# Used when a file's vocabulary cannot be read: the markers of the common chat templates.
_COMMON = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>",
           "<|end_header_id|>", "<|begin_of_text|>", "<|end_of_text|>", "<start_of_turn>", "<end_of_turn>",
           "<s>", "</s>", "[INST]", "[/INST]", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>")


@lru_cache(maxsize=8)
def special_tokens(path: str | Path) -> SpecialTokens:
    """The special tokens in the vocabulary of the GGUF file at ``path``
    (the common chat markers if the vocabulary cannot be read)."""
    try:
        with open(path, "rb") as handle:
            tokens, types = _read_vocab(handle)
    except (OSError, ValueError, struct.error):
        tokens = types = None
    if not tokens or not types or len(tokens) != len(types):
        return SpecialTokens(_COMMON)
    return SpecialTokens([t for t, kind in zip(tokens, types) if kind in _SPECIAL_TYPES])


def _read_vocab(handle: BinaryIO) -> tuple[list[str] | None, list[int] | None]:
    """``tokenizer.ggml.tokens`` and ``tokenizer.ggml.token_type`` from a
    GGUF header (v2/v3), skipping every other key."""

    def unpack(fmt: str):
        size = struct.calcsize("<" + fmt)
        data = handle.read(size)
        if len(data) != size:
            raise ValueError("truncated GGUF header")
        return struct.unpack("<" + fmt, data)[0]

    def string(keep: bool = True) -> str | None:
        n = unpack("Q")
        if not keep:
            handle.seek(n, 1)
            return None
        return handle.read(n).decode("utf-8", "replace")

    def value(kind: int, keep: bool):
        if kind == _STRING:
            return string(keep)
        if kind == _ARRAY:
            item, n = unpack("I"), unpack("Q")
            if item in _SCALARS and not keep:
                handle.seek(struct.calcsize("<" + _SCALARS[item]) * n, 1)
                return None
            if item in _SCALARS:
                fmt = f"<{n}{_SCALARS[item]}"
                return list(struct.unpack(fmt, handle.read(struct.calcsize(fmt))))
            return [value(item, keep) for _ in range(n)]
        if kind in _SCALARS:
            return unpack(_SCALARS[kind])
        raise ValueError(f"unknown GGUF value type {kind}")

    if handle.read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    version = unpack("I")
    if version < 2:
        raise ValueError(f"GGUF version {version} is not supported")
    unpack("Q")  # tensor count
    tokens = types = None
    for _ in range(unpack("Q")):
        key = string()
        kind = unpack("I")
        wanted = key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")
        got = value(kind, wanted)
        if key == "tokenizer.ggml.tokens":
            tokens = got
        elif key == "tokenizer.ggml.token_type":
            types = got
        if tokens is not None and types is not None:
            break
    return tokens, types
