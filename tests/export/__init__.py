"""Tests of ONNX / TorchScript export and onnxruntime prediction."""
