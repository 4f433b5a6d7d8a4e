"""The fused model: encoders + fusion + one head per label."""

from crossfuse.models.fusion_model import FusionModel, TaskSpec, build_model

__all__ = ["FusionModel", "TaskSpec", "build_model"]
