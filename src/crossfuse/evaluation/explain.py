"""Per-row modality influence: how much removing each input changes the prediction.

For every row and input, the model is re-scored with that input hidden (marked absent,
exactly as a missing file would be). The influence is the drop in the probability of
the class predicted with everything present (classification), or the change of the
predicted value in label units (regression). Positive: the input supported the
prediction. The input with the largest absolute influence is the row's
``top_modality``; inputs already absent in a row have influence 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.table import Table
from crossfuse.models.fusion_model import FusionModel
from crossfuse.models.inference import Inference, run_inference

PREFIX = "influence_"


def explain_rows(
    model: FusionModel, pre: Preprocessor, table: Table, *, batch_size: int = 64
) -> tuple[Inference, pd.DataFrame]:
    """The full-input inference and a frame of influences (one column per input)."""
    dataset = FusionDataset(table, pre, labels=False)
    batches = list(DataLoader(dataset, batch_size=batch_size, collate_fn=Collator(pre)))
    full = run_inference(model, pre, table, labels=False, loader=batches)
    task = model.tasks[0]
    enc = pre.labels[task.name]
    scores = full.scores[task.name]
    influence: dict[str, np.ndarray] = {}
    for name in model.input_names:
        hidden = run_inference(
            model,
            pre,
            table,
            labels=False,
            loader=batches,
            keep=lambda present, n=name: {n: torch.zeros_like(present[n])},
        ).scores[task.name]
        if task.task == "classification":
            picked = scores.argmax(1, keepdim=True)
            delta = (scores.gather(1, picked) - hidden.gather(1, picked)).squeeze(1).numpy()
        else:
            delta = enc.unscale(scores.numpy().astype(np.float64)) - enc.unscale(
                hidden.numpy().astype(np.float64)
            )
        influence[name] = np.where(full.present[name].numpy(), delta, 0.0)
    frame = pd.DataFrame({f"{PREFIX}{n}": v for n, v in influence.items()})
    stacked = np.abs(np.stack(list(influence.values()), axis=1))  # (N, M)
    names = np.array(model.input_names, dtype=object)
    frame["top_modality"] = np.where(stacked.max(1) > 0, names[stacked.argmax(1)], None)
    return full, frame
