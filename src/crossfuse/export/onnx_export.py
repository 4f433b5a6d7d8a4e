"""Export a model directory to ONNX or TorchScript, checked against PyTorch.

>>> export_model("model/", "export/", ExportConfig(format="onnx"), data="sample.csv")

The export directory holds the network file (``model.onnx`` or ``model.torchscript.pt``),
a copy of ``crossfuse.json`` (preprocessing, classes, config) and ``export.json``: the
format, opset, flat inputs (names, dtypes, shapes with the dynamic ``batch`` axis),
outputs, classes per task and the check result. The export runs the written file and
the PyTorch model on the check rows (whole, one row at a time, and 64 at once) and is
refused if any probability or value differs by more than ``tolerance``.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from crossfuse import __version__
from crossfuse.data.dataset import Collator
from crossfuse.data.table import TableLike
from crossfuse.encoders import DEFAULT_ENCODERS
from crossfuse.errors import ConfigError, CrossfuseError
from crossfuse.export import writers
from crossfuse.export.check import check_agreement, failure_message
from crossfuse.export.flat import FlatFusionModel, TensorSpec, tensor_specs
from crossfuse.export.onnx_predictor import EXPORT_FILE, ONNX_FILE, TORCHSCRIPT_FILE
from crossfuse.export.sample import check_items
from crossfuse.model_dir import META_FILE, WEIGHTS_FILE
from crossfuse.models.fusion_model import encoder_config_for

FORMATS = {"onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE}


@dataclass
class ExportConfig:
    """How to export.

    Attributes:
        format: ``onnx`` or ``torchscript``.
        exporter: ONNX only: ``torchscript`` (torch's tracing exporter, the default;
            handles every from-scratch encoder) or ``dynamo`` (``torch.export``).
        opset: ONNX opset; None → 17 (tracing exporter) or 18 (dynamo).
        tolerance: largest accepted absolute difference to PyTorch.
        check_rows: table (or synthetic) rows to check on, before the absent variants.
        seed: seed of the synthetic rows.
        threads: onnxruntime threads for the check (None: torch's thread count).
    """

    format: str = "onnx"
    exporter: str = "torchscript"
    opset: int | None = None
    tolerance: float = 1e-4
    check_rows: int = 16
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(
                f"unknown export format {self.format!r}; choose one of: {', '.join(FORMATS)}"
            )
        if self.exporter not in writers.DEFAULT_OPSET:
            raise ConfigError(
                f"unknown ONNX exporter {self.exporter!r}; choose torchscript or dynamo"
            )
        if self.opset is not None:
            low, high = writers.OPSET_RANGE[self.exporter]
            if isinstance(self.opset, bool) or not isinstance(self.opset, int):
                raise ConfigError(f"export opset must be an integer, got {self.opset!r}")
            if not low <= self.opset <= high:
                raise ConfigError(
                    f"export opset {self.opset} is not supported by the {self.exporter} "
                    f"exporter; use {low}..{high}"
                )
        if not (isinstance(self.tolerance, int | float) and 0 < self.tolerance < 1):
            raise ConfigError(f"export tolerance must be in (0, 1), got {self.tolerance!r}")
        if isinstance(self.check_rows, bool) or not isinstance(self.check_rows, int):
            raise ConfigError(f"export check_rows must be an integer, got {self.check_rows!r}")
        if self.check_rows < 1:
            raise ConfigError(f"export check_rows must be ≥ 1, got {self.check_rows}")

    @property
    def writer_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`writers.write_file` (the opset default resolved)."""
        opset = self.opset if self.opset is not None else writers.DEFAULT_OPSET[self.exporter]
        return {"format": self.format, "exporter": self.exporter, "opset": opset}


@dataclass
class ExportResult:
    """Where the export went and its ``export.json`` contents."""

    path: Path
    manifest: dict[str, Any]

    @property
    def max_abs_diff(self) -> float:
        return float(self.manifest["check"]["max_abs_diff"])


def export_model(
    model: str | Path,
    out: str | Path,
    config: ExportConfig | None = None,
    *,
    data: TableLike | None = None,
) -> ExportResult:
    """Export model directory ``model`` to the export directory ``out``.

    Args:
        model: a model directory (``FusionPredictor.save``; its live version if versioned).
        out: the export directory (created; an earlier export there is replaced).
        config: format and checking options.
        data: a table to trace and check on (labels not needed); None → synthetic rows.

    Raises:
        ConfigError: the export failed (naming the encoder that cannot be exported) or
            disagrees with PyTorch by more than ``config.tolerance``.
    """
    from crossfuse.api import FusionPredictor
    from crossfuse.versions import resolve_model_dir

    cfg = config or ExportConfig()
    source = resolve_model_dir(model)
    target = Path(out)
    _check_target(source, target)
    predictor = FusionPredictor.load(source, device="cpu")
    pre, net = predictor.preprocessor_, predictor.model_.eval()
    items, origin = check_items(pre, data, rows=cfg.check_rows, seed=cfg.seed)
    collate = Collator(pre)
    sample = collate(items)["inputs"]
    specs = tensor_specs(sample, pre)
    flat = FlatFusionModel(net, specs)
    outputs = [o.name for o in flat.outputs]
    encoders = _encoder_names(predictor)

    with tempfile.TemporaryDirectory(prefix="crossfuse-export-") as tmp:
        file = Path(tmp) / FORMATS[cfg.format]
        try:
            writers.write_file(flat, sample, specs, outputs, file, **cfg.writer_options)
        except CrossfuseError:
            raise
        except Exception as e:
            message = failure_message(
                net, sample, specs, encoders, Path(tmp), e, **cfg.writer_options
            )
            raise ConfigError(message) from e
        graph_inputs, opset = specs, None
        if cfg.format == "onnx":
            names, opset = writers.onnx_graph_info(file)
            graph_inputs = [s for s in specs if s.name in names]
            threads = cfg.threads if cfg.threads is not None else torch.get_num_threads()
            runner = writers.onnx_runner(file, graph_inputs, threads)
        else:
            runner = writers.torchscript_runner(file, specs, outputs)
        check = check_agreement(flat, runner, items, collate, cfg.tolerance)
        check["source"] = origin
        if check["max_abs_diff"] > cfg.tolerance:
            raise ConfigError(
                f"the {cfg.format} export disagrees with PyTorch: max abs difference "
                f"{check['max_abs_diff']:.3g} on output {check['worst_output']!r} (batch of "
                f"{check['worst_batch']}) exceeds the tolerance {cfg.tolerance:g}; nothing written"
            )
        target.mkdir(parents=True, exist_ok=True)
        for name in FORMATS.values():
            (target / name).unlink(missing_ok=True)
        shutil.copyfile(file, target / file.name)
    shutil.copyfile(source / META_FILE, target / META_FILE)
    manifest = _manifest(cfg, predictor, flat, graph_inputs, opset, encoders, check)
    (target / EXPORT_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return ExportResult(target, manifest)


def _check_target(source: Path, target: Path) -> None:
    if target.resolve() == source.resolve() or (target / WEIGHTS_FILE).exists():
        raise ConfigError(
            f"export directory {target} is a model directory; choose a separate folder (--out)"
        )
    if target.exists() and not target.is_dir():
        raise ConfigError(f"export directory {target} exists and is not a folder")


def _encoder_names(predictor: Any) -> dict[str, str]:
    """Input → registered encoder name, as the config chose it."""
    pre, model_cfg = predictor.preprocessor_, predictor.config_.model
    return {
        name: encoder_config_for(model_cfg, name, modality).name or DEFAULT_ENCODERS[modality]
        for name, modality in pre.inputs.items()
    }


def _manifest(
    cfg: ExportConfig,
    predictor: Any,
    flat: FlatFusionModel,
    inputs: list[TensorSpec],
    opset: int | None,
    encoders: dict[str, str],
    check: dict[str, Any],
) -> dict[str, Any]:
    labels = predictor.preprocessor_.labels
    outputs = []
    for spec in flat.outputs:
        enc = labels[spec.task]
        extra = (
            {"classes": list(enc.classes)}
            if spec.kind == "classification"
            else {"mean": enc.mean, "std": enc.std, "note": "value * std + mean = label units"}
        )
        outputs.append({**spec.to_dict(), **extra})
    unused = [s.name for s in flat.inputs if s not in inputs]
    return {
        "format": cfg.format,
        "file": FORMATS[cfg.format],
        "exporter": cfg.exporter if cfg.format == "onnx" else "torch.jit.trace",
        "opset": opset,
        "crossfuse_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "batch_axis": {"index": 0, "name": "batch"},
        "inputs": [s.to_dict() for s in inputs],
        "unused_inputs": unused,
        "outputs": outputs,
        "classes": {c: list(e.classes) for c, e in labels.items() if e.task == "classification"},
        "encoders": encoders,
        "fusion": predictor.config_.model.fusion,
        "check": check,
        "config": asdict(cfg),
    }
