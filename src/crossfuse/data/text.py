"""Text cleaning and the vocabulary/tokenizer for the from-scratch text encoder."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossfuse.data.media import is_missing
from crossfuse.data.processor import ColumnProcessor, register_processor
from crossfuse.errors import CellError, ConfigError

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\t\n\r")


@dataclass
class TextConfig:
    """How text is cleaned and split into tokens."""

    tokenizer: str = "auto"  # "word", "char", or "auto": char when cells average ≤ 2 words
    lowercase: bool = True  # fold case before building the vocabulary
    max_length: int = 128  # tokens kept per cell (longer cells are truncated)
    min_freq: int = 1  # tokens seen fewer times in training become <unk>
    max_vocab: int = 30000  # most frequent tokens kept

    def __post_init__(self) -> None:
        if self.tokenizer not in ("auto", "word", "char"):
            raise ConfigError(f"text.tokenizer is {self.tokenizer!r}; use auto, word or char")
        if self.max_length < 1 or self.min_freq < 1 or self.max_vocab < 2:
            raise ConfigError("text.max_length, text.min_freq must be ≥ 1 and max_vocab ≥ 2")


def clean_text(value: Any) -> str:
    """Unicode NFKC normalisation, control characters removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", str(value)).translate(_CONTROL)
    return " ".join(text.split())


def tokenize(text: str, kind: str) -> list[str]:
    """Split cleaned text into word/punctuation tokens or characters."""
    return list(text) if kind == "char" else _WORD.findall(text)


@register_processor("text")
class TextProcessor(ColumnProcessor):
    """Cleans text and maps it to token ids with a vocabulary fitted on training data."""

    config_class = TextConfig

    def __init__(self, config: TextConfig | None = None) -> None:
        self.config = config or TextConfig()
        self.kind = self.config.tokenizer
        self.vocab: list[str] = [PAD, UNK]
        self._index: dict[str, int] = {PAD: 0, UNK: 1}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def fit(self, cells: Sequence[Any], base_dir: Path | None = None) -> TextProcessor:
        texts = [self._clean(c) for c in cells if not is_missing(c)]
        texts = [t for t in texts if t]
        if self.config.tokenizer == "auto":
            words = np.mean([len(t.split()) for t in texts]) if texts else 0.0
            self.kind = "char" if words <= 2.0 else "word"
        counts = Counter(tok for t in texts for tok in tokenize(t, self.kind))
        kept = [
            tok
            for tok, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if n >= self.config.min_freq
        ][: self.config.max_vocab - 2]
        self.vocab = [PAD, UNK, *kept]
        self._index = {tok: i for i, tok in enumerate(self.vocab)}
        return self

    def _clean(self, cell: Any) -> str:
        text = clean_text(cell)
        return text.lower() if self.config.lowercase else text

    def process(
        self,
        cell: Any,
        *,
        base_dir: Path | None = None,
        train: bool = False,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        if is_missing(cell):
            raise CellError("empty cell")
        text = self._clean(cell)
        if not text:
            raise CellError("empty text after cleaning")
        tokens = tokenize(text, self.kind)[: self.config.max_length]
        if not tokens:
            raise CellError("text has no tokens")
        return torch.tensor([self._index.get(t, 1) for t in tokens], dtype=torch.long)

    def collate(self, items: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        present = torch.tensor([x is not None for x in items], dtype=torch.bool)
        lengths = torch.tensor([len(x) if x is not None else 0 for x in items], dtype=torch.long)
        ids = torch.zeros((len(items), max(int(lengths.max()), 1)), dtype=torch.long)  # (B, T)
        for i, x in enumerate(items):
            if x is not None:
                ids[i, : len(x)] = x
        return {"ids": ids, "lengths": lengths, "present": present}

    def get_state(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "kind": self.kind, "vocab": self.vocab}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TextProcessor:
        proc = cls(TextConfig(**state["config"]))
        proc.kind = state["kind"]
        proc.vocab = list(state["vocab"])
        proc._index = {tok: i for i, tok in enumerate(proc.vocab)}
        return proc
