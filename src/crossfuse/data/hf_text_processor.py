"""``hf-text`` processor: clean text, then a pretrained Hugging Face tokenizer → token ids."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossfuse.data.media import is_missing
from crossfuse.data.processor import ColumnProcessor, ReloadsAfterPickling, register_processor
from crossfuse.data.text import clean_text
from crossfuse.encoders.hf_common import DEFAULT_TEXT_MODEL, load_hf, resolve_model
from crossfuse.errors import CellError, ConfigError, ModelDirError


@dataclass
class HFTextProcessorConfig:
    """Which tokenizer to use and how long its output may be."""

    model: str = DEFAULT_TEXT_MODEL  # hub id or local directory; "default" = bundled MiniLM
    max_length: int = 128  # token ids kept per cell, special tokens included

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"hf-text model must be a hub id or directory, got {self.model!r}")
        ml = self.max_length
        if isinstance(ml, bool) or not isinstance(ml, int) or ml < 2:
            raise ConfigError(f"hf-text max_length must be an integer >= 2, got {ml!r}")


@register_processor("hf-text", "text")
class HFTextProcessor(ReloadsAfterPickling, ColumnProcessor):
    """Text column → 1-D LongTensor of a pretrained tokenizer's ids (with special tokens).

    The tokenizer is loaded on first use and never saved: the state is the config
    only, and pickling (for DataLoader workers) drops the tokenizer, which each worker
    reloads from the same hub id or directory.
    """

    _reloadable = "_tokenizer"

    config_class = HFTextProcessorConfig

    def __init__(self, config: HFTextProcessorConfig | None = None) -> None:
        self.config = config or HFTextProcessorConfig()
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The ``AutoTokenizer`` for ``config.model`` (loaded once)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            path = resolve_model(self.config.model, allow_default=True)
            self._tokenizer = load_hf(AutoTokenizer.from_pretrained, path, "tokenizer")
        return self._tokenizer

    @property
    def pad_id(self) -> int:
        """The tokenizer's padding id (0 for tokenizers without one; padding is masked)."""
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def process(
        self,
        cell: Any,
        *,
        base_dir: Path | None = None,
        train: bool = False,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """One cell → ``(n,)`` int64 ids, truncated to ``max_length``.

        Raises:
            CellError: the cell is empty (or only whitespace/control characters).
        """
        text = "" if is_missing(cell) else clean_text(cell)
        if not text:
            raise CellError("empty text")
        ids = self.tokenizer(
            text, truncation=True, max_length=self.config.max_length, add_special_tokens=True
        )["input_ids"]
        if not ids:
            raise CellError("text has no tokens")
        return torch.tensor(ids, dtype=torch.long)

    def collate(self, items: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Pad with the tokenizer's pad id → ``input_ids``/``attention_mask`` (B, T), ``present``.

        An absent row is one pad token with mask 0.
        """
        present = torch.tensor([x is not None for x in items], dtype=torch.bool)
        width = max([len(x) for x in items if x is not None], default=1)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(items), width), dtype=torch.long)  # (B, T)
        for i, x in enumerate(items):
            if x is not None:
                ids[i, : len(x)] = x
                mask[i, : len(x)] = 1
        return {"input_ids": ids, "attention_mask": mask, "present": present}

    def get_state(self) -> dict[str, Any]:
        """The config only; the tokenizer is reloaded from ``model``."""
        return {"config": asdict(self.config)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HFTextProcessor:
        """Rebuild from :meth:`get_state`."""
        try:
            return cls(HFTextProcessorConfig(**state["config"]))
        except (KeyError, TypeError, ConfigError) as err:
            raise ModelDirError(f"hf-text processor state is invalid: {err}") from None
