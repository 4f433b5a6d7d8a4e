"""`crossfuse export`: write a model directory as ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crossfuse.cli.common import out


def export(
    model: Annotated[Path, typer.Argument(help="Model directory to export.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Export directory to write.")],
    export_format: Annotated[
        str, typer.Option("--format", "-f", help="onnx or torchscript.")
    ] = "onnx",
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", help="Table to check the export on (default: synthetic rows)."
        ),
    ] = None,
    exporter: Annotated[
        str,
        typer.Option(help="ONNX exporter: torchscript (tracing, default) or dynamo."),
    ] = "torchscript",
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset (default 17; 18 with dynamo).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Largest accepted difference to PyTorch's probabilities.")
    ] = 1e-4,
) -> None:
    """Export a model for serving without crossfuse's PyTorch model code.

    The export is run on sample rows (from --data, else synthetic) next to the PyTorch
    model and refused if they differ by more than --tolerance. Predict with the export
    directory as MODEL in `crossfuse predict` (ONNX, via onnxruntime).
    """
    from crossfuse.export import ExportConfig, export_model

    config = ExportConfig(
        format=export_format.strip().lower(), exporter=exporter, opset=opset, tolerance=tolerance
    )
    result = export_model(model, out_dir, config, data=data)
    check = result.manifest["check"]
    out.print(
        f"{config.format} export written to [bold]{result.path}[/bold]; "
        f"max abs difference to PyTorch {check['max_abs_diff']:.2g} on {check['rows']} "
        f"{check['source']} rows (batch sizes {', '.join(map(str, check['batch_sizes']))})"
    )
