"""A lazily decoding torch Dataset over a table, and the collate function for it.

Each item decodes only its own row, so memory does not grow with the number of rows
iterated. A cell that cannot be used becomes an absent modality plus a
:class:`~crossfuse.data.problems.Problem` carried in the batch (so problems found in
DataLoader workers reach the main process); in strict mode it is an error instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from crossfuse.data.preprocessor import TABULAR, Preprocessor
from crossfuse.data.problems import Problem
from crossfuse.data.table import Table
from crossfuse.errors import CellError


class FusionDataset(Dataset):
    """Rows of ``table`` as per-input tensors, targets and the problems found.

    Args:
        table: the data.
        preprocessor: a fitted :class:`Preprocessor`.
        train: enable augmentation (random draws come from torch's RNG, which Lightning
            and the DataLoader seed per worker, so runs are reproducible).
        strict: raise :class:`CellError` naming row, column and file for any bad cell.
        labels: read label columns (False for prediction on unlabelled tables).
        cached: for some inputs, an object with a ``keys`` list (one cache key per row,
            None for an unusable cell): those inputs yield their key instead of a tensor.
    """

    def __init__(
        self,
        table: Table,
        preprocessor: Preprocessor,
        *,
        train: bool = False,
        strict: bool = False,
        labels: bool = True,
        cached: dict[str, Any] | None = None,
    ) -> None:
        self.table = table
        self.cached = cached or {}
        self.pre = preprocessor
        self.train = train
        self.strict = strict
        self.use_labels = labels
        preprocessor.check_columns(table, need_labels=labels)
        wanted = list(preprocessor.columns)
        wanted += preprocessor.tabular.columns if preprocessor.tabular else []
        wanted += list(preprocessor.labels) if labels else []
        # Object arrays index faster than DataFrame rows and hold references, not copies.
        self._cells = {c: table.df[c].to_numpy(dtype=object) for c in dict.fromkeys(wanted)}

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, Any]:
        problems: list[Problem] = []
        rng = None
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        inputs: dict[str, Any] = {}
        for col in self.pre.columns:
            if col in self.cached:
                inputs[col] = self.cached[col].keys[i]
                if inputs[col] is not None:
                    continue
            inputs[col] = self._process(i, col, problems, rng)
        if self.pre.tabular is not None:
            inputs[TABULAR] = self._process(i, TABULAR, problems, rng)
        targets: dict[str, Any] = {}
        if self.use_labels:
            for col, enc in self.pre.labels.items():
                try:
                    targets[col] = enc.encode(self._cells[col][i])
                except CellError as e:
                    problems.append(Problem(i, col, e.reason, kind="label"))
                    targets[col] = None
        return {"index": i, "inputs": inputs, "targets": targets, "problems": problems}

    def process_input(self, i: int, name: str) -> Any:
        """Row ``i`` of one input alone (None when its cell is unusable), e.g. to swap
        a corrupted version of one modality into otherwise clean rows."""
        return self._process(i, name, [], None)

    def _process(
        self, i: int, name: str, problems: list[Problem], rng: np.random.Generator | None
    ) -> Any:
        if name == TABULAR:
            row = {c: self._cells[c][i] for c in self.pre.tabular.columns}
            value, bad = self.pre.tabular.process_row(row)
            for col, reason in bad:
                self._report(CellError(reason), i, col, row[col], problems)
            return value
        cell = self._cells[name][i]
        try:
            return self.pre.columns[name].process(
                cell, base_dir=self.table.base_dir, train=self.train, rng=rng
            )
        except CellError as e:
            self._report(e, i, name, cell, problems)
            return None

    def _report(self, e: CellError, row: int, col: str, cell: Any, problems: list[Problem]) -> None:
        if self.strict:
            raise e.located(row=row, column=col, table=self.table.name) from None
        kind = "missing" if e.reason == "empty cell" else "cell"
        problems.append(Problem(row, col, e.reason, file=e.file, kind=kind))


class Collator:
    """Turns a list of dataset items into a batch (a picklable callable for workers).

    ``cached`` maps inputs whose items are cache keys to an object whose
    ``load(keys)`` returns their batch (read from the embedding store).
    """

    def __init__(self, preprocessor: Preprocessor, cached: dict[str, Any] | None = None) -> None:
        self.pre = preprocessor
        self.cached = cached or {}

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        inputs = {}
        for col, proc in self.pre.columns.items():
            values = [it["inputs"][col] for it in items]
            if col in self.cached:
                inputs[col] = self.cached[col].load(values)
            else:
                inputs[col] = proc.collate(values)
        if self.pre.tabular is not None:
            inputs[TABULAR] = self.pre.tabular.collate([it["inputs"][TABULAR] for it in items])
        targets, target_present = {}, {}
        for col, enc in self.pre.labels.items():
            if col not in items[0]["targets"]:
                continue
            values = [it["targets"][col] for it in items]
            target_present[col] = torch.tensor([v is not None for v in values])
            if enc.task == "classification":
                targets[col] = torch.tensor([v if v is not None else -100 for v in values])
            else:
                targets[col] = torch.tensor(
                    [v if v is not None else float("nan") for v in values], dtype=torch.float32
                )
        return {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "inputs": inputs,
            "targets": targets,
            "target_present": target_present,
            "problems": [p for it in items for p in it["problems"]],
        }
