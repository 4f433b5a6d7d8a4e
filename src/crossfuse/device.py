"""Choosing the device and numeric precision to run on."""

from __future__ import annotations

import torch

from crossfuse.errors import ConfigError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA if available, else Apple MPS if available, else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}: {e}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """Lightning precision: ``auto`` → bf16 autocast on CUDA (if supported), fp32 elsewhere."""
    if precision != "auto":
        return "32-true" if precision == "32" else precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def lightning_accelerator(device: torch.device) -> str:
    return {"cuda": "gpu", "mps": "mps"}.get(device.type, "cpu")
