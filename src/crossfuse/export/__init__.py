"""Exporting trained models (ONNX, TorchScript) and predicting with the ONNX export.

>>> from crossfuse.export import ExportConfig, OnnxPredictor, export_model
>>> export_model("model/", "export/", ExportConfig(format="onnx"), data="sample.csv")
>>> OnnxPredictor.load("export/").predict("new.csv")
"""

from crossfuse.export.flat import FlatFusionModel, OutputSpec, TensorSpec
from crossfuse.export.onnx_export import ExportConfig, ExportResult, export_model
from crossfuse.export.onnx_predictor import OnnxPredictor

__all__ = [
    "ExportConfig",
    "ExportResult",
    "FlatFusionModel",
    "OnnxPredictor",
    "OutputSpec",
    "TensorSpec",
    "export_model",
]
