"""The rows an export is traced with and checked on.

Built from the user's table when given (decoded exactly as prediction decodes it), else
synthetic rows of the right shapes and dtypes. Either way some copies of the first row
with one input absent, and a row with every input absent, are added so the presence
masks are exercised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crossfuse.data.dataset import FusionDataset
from crossfuse.data.preprocessor import TABULAR, Preprocessor
from crossfuse.data.table import TableLike, read_table
from crossfuse.errors import ConfigError

Item = dict[str, Any]  # a FusionDataset item: {"index", "inputs", "targets", "problems"}


def check_items(
    pre: Preprocessor, data: TableLike | None = None, *, rows: int = 16, seed: int = 0
) -> tuple[list[Item], str]:
    """``(items, source)``: ``rows`` rows from ``data`` (or synthetic) plus absent variants.

    ``source`` is ``"data"`` or ``"synthetic"``.
    """
    if rows < 1:
        raise ConfigError(f"export check rows must be ≥ 1, got {rows}")
    if data is not None:
        table = read_table(data)
        if len(table) == 0:
            raise ConfigError(f"table {table.name} has no rows to check the export on")
        dataset = FusionDataset(table, pre, labels=False)
        base = [dict(dataset[i]["inputs"]) for i in range(min(rows, len(table)))]
        source = "data"
    else:
        rng = np.random.default_rng(seed)
        base = [synthetic_inputs(pre, rng, i) for i in range(rows)]
        source = "synthetic"
    names = list(pre.inputs)
    variants = [{**base[0], name: absent_input(pre, name)} for name in names]
    variants.append({name: absent_input(pre, name) for name in names})
    items = [
        {"index": i, "inputs": inputs, "targets": {}, "problems": []}
        for i, inputs in enumerate(base + variants)
    ]
    return items, source


def absent_input(pre: Preprocessor, name: str) -> Any:
    """What the dataset yields for an unusable cell of input ``name``."""
    if name == TABULAR:
        assert pre.tabular is not None
        blank = dict.fromkeys(pre.tabular.columns)
        return pre.tabular.process_row(blank)[0]
    return None


def synthetic_inputs(pre: Preprocessor, rng: np.random.Generator, row: int) -> dict[str, Any]:
    """One synthetic row: every input present, with plausible values.

    Text is a few vocabulary words (or a sentence for pretrained tokenizers), run
    through the real processor; images, audio and other fixed-shape inputs are
    standard-normal tensors; tabular cells are drawn around the fitted means and among
    the fitted categories (some left empty).
    """
    out: dict[str, Any] = {}
    for name, proc in pre.columns.items():
        modality = pre.inputs[name]
        if modality == "text":
            vocab = [w for w in getattr(proc, "vocab", [])[2:] if w.strip()]
            length = int(rng.integers(1, 9))
            if vocab:
                words = [vocab[int(j)] for j in rng.integers(0, len(vocab), length)]
                sep = "" if getattr(proc, "kind", "word") == "char" else " "
                cell = sep.join(words)
            else:
                cell = " ".join(["a short synthetic sentence"] * length)
            out[name] = proc.process(cell)
        elif hasattr(proc, "output_shape"):
            shape = tuple(proc.output_shape)
            out[name] = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        else:
            raise ConfigError(
                f"cannot make synthetic rows for input {name!r} (processor "
                f"{proc.processor_name!r}); pass a table to check the export on (--data)"
            )
    if pre.tabular is not None:
        tab = pre.tabular
        cells: dict[str, Any] = {}
        for j, col in enumerate(tab.numeric):
            value = tab.mean[j] + tab.std[j] * float(rng.standard_normal())
            cells[col] = None if row > 0 and rng.random() < 0.2 else value
        for col in tab.categorical:
            known = tab.categories.get(col) or ["unseen"]
            pick = known[int(rng.integers(0, len(known)))]
            cells[col] = None if row > 0 and rng.random() < 0.2 else pick
        out[TABULAR] = tab.process_row(cells)[0]
    return out
