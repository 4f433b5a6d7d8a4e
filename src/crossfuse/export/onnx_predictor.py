"""Prediction with an exported ONNX model: crossfuse's preprocessing, onnxruntime's network.

>>> predictor = OnnxPredictor.load("export/")
>>> predictor.predict_proba("new.csv")

The table is decoded and batched by the same :class:`FusionDataset` and :class:`Collator`
that ``FusionPredictor`` uses (the preprocessing state comes from the copied
``crossfuse.json``); no PyTorch model is built.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.table import TableLike, read_table
from crossfuse.errors import CrossfuseError, ModelDirError
from crossfuse.export.flat import Batch, TensorSpec
from crossfuse.model_dir import META_FILE

EXPORT_FILE, ONNX_FILE, TORCHSCRIPT_FILE = "export.json", "model.onnx", "model.torchscript.pt"
NUMPY_DTYPES = {"float32": np.float32, "int64": np.int64, "bool": np.bool_}


class OnnxSession:
    """An onnxruntime session fed from collated crossfuse batches.

    Args:
        path: the ``.onnx`` file.
        inputs: the flat inputs the export declared; the graph may use fewer (an exporter
            drops inputs the network never reads, e.g. an empty categorical block).
        threads: onnxruntime intra-op threads (None: its default).
    """

    def __init__(self, path: str | Path, inputs: list[TensorSpec], threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own types for unreadable models
            raise ModelDirError(f"{path} is not a loadable ONNX model: {e}") from None
        by_name = {s.name: s for s in inputs}
        graph = [i.name for i in self.session.get_inputs()]
        unknown = [n for n in graph if n not in by_name]
        if unknown:
            raise ModelDirError(f"{path} has inputs {unknown} that export.json does not describe")
        self.inputs = [by_name[n] for n in graph]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: Batch) -> dict[str, np.ndarray]:
        """Output name → array for one collated batch (``batch[input][key]`` tensors)."""
        feed = {}
        for spec in self.inputs:
            try:
                value = batch[spec.input][spec.key]
            except KeyError:
                raise ModelDirError(f"the batch has no tensor {spec.name!r}") from None
            feed[spec.name] = value.numpy().astype(NUMPY_DTYPES[spec.dtype], copy=False)
        return dict(zip(self.output_names, self.session.run(None, feed), strict=True))


def read_export_dir(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(export manifest, crossfuse.json)`` of an export directory, with clear errors."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelDirError(f"export directory {folder} not found")
    docs = []
    for name in (EXPORT_FILE, META_FILE):
        file = folder / name
        if not file.is_file():
            raise ModelDirError(f"{folder} is not a crossfuse export directory (no {name})")
        try:
            docs.append(json.loads(file.read_text()))
        except json.JSONDecodeError as e:
            raise ModelDirError(f"{file} is not valid JSON: {e.msg} (line {e.lineno})") from None
    return docs[0], docs[1]


class OnnxPredictor:
    """``predict`` / ``predict_proba`` like :class:`~crossfuse.api.FusionPredictor`, on ONNX.

    Build it with :meth:`load`. ``preprocessor_`` is the rebuilt preprocessing and
    ``manifest`` the parsed ``export.json``.
    """

    def __init__(
        self, session: OnnxSession, preprocessor: Preprocessor, manifest: dict[str, Any]
    ) -> None:
        self.session = session
        self.preprocessor_ = preprocessor
        self.manifest = manifest
        self.batch_size = 64

    @classmethod
    def load(cls, path: str | Path, *, threads: int | None = None) -> OnnxPredictor:
        """Load an export directory written by ``crossfuse export --format onnx``."""
        folder = Path(path)
        manifest, meta = read_export_dir(folder)
        if manifest.get("format") != "onnx" or not (folder / ONNX_FILE).is_file():
            raise ModelDirError(
                f"{folder} holds a {manifest.get('format')!r} export, not ONNX (no {ONNX_FILE})"
            )
        try:
            pre = Preprocessor.from_state(meta["preprocessor"])
        except KeyError:
            raise ModelDirError(f"{folder / META_FILE} has no preprocessing state") from None
        specs = [TensorSpec.from_dict(d) for d in manifest.get("inputs", [])]
        return cls(OnnxSession(folder / ONNX_FILE, specs, threads), pre, manifest)

    @property
    def labels(self) -> list[str]:
        """The label columns, in the order of the outputs."""
        return list(self.preprocessor_.labels)

    @property
    def class_labels(self) -> list[Any] | dict[str, list[Any]]:
        """Classes of the (first) classification label, in probability-column order."""
        classes = {c: e.classes for c, e in self.preprocessor_.labels.items()}
        return classes[self.labels[0]] if len(classes) == 1 else classes

    def _batches(self, data: TableLike) -> Iterator[Batch]:
        table = read_table(data)
        dataset = FusionDataset(table, self.preprocessor_, labels=False)
        collate = Collator(self.preprocessor_)
        for start in range(0, len(dataset), self.batch_size):
            stop = min(start + self.batch_size, len(dataset))
            yield collate([dataset[i] for i in range(start, stop)])["inputs"]

    def scores(self, data: TableLike) -> dict[str, np.ndarray]:
        """Task → ``(N, C)`` probabilities or ``(N,)`` standardised values, in row order."""
        names = {o["task"]: o["name"] for o in self.manifest.get("outputs", [])}
        missing = [t for t in self.labels if t not in names]
        if missing:
            raise ModelDirError(f"export.json names no output for label(s) {missing}")
        parts: dict[str, list[np.ndarray]] = {t: [] for t in self.labels}
        for batch in self._batches(data):
            out = self.session.run(batch)
            for task in self.labels:
                parts[task].append(out[names[task]])
        return {t: np.concatenate(p) if p else np.zeros((0,)) for t, p in parts.items()}

    def predict_proba(self, data: TableLike) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Class probabilities, one column per class (a dict of frames when multitask)."""
        scores = self.scores(data)
        frames = {
            col: pd.DataFrame(scores[col].reshape(-1, len(enc.classes)), columns=list(enc.classes))
            for col, enc in self.preprocessor_.labels.items()
            if enc.task == "classification"
        }
        if not frames:
            raise CrossfuseError("predict_proba needs a classification label; use predict()")
        return frames[self.labels[0]] if len(self.labels) == 1 else frames

    def predict(self, data: TableLike) -> pd.Series | pd.DataFrame:
        """Predicted class (or value) per row; one column per label when multitask."""
        scores = self.scores(data)
        out: dict[str, Any] = {}
        for col, enc in self.preprocessor_.labels.items():
            if enc.task == "classification":
                out[col] = [
                    enc.decode(int(i))
                    for i in scores[col].reshape(-1, len(enc.classes)).argmax(axis=1)
                ]
            else:
                out[col] = enc.unscale(scores[col].astype(np.float64))
        if len(self.labels) == 1:
            return pd.Series(out[self.labels[0]], name=self.labels[0])
        return pd.DataFrame(out)
