"""Ways of combining the encoders' outputs, created by name from a registry."""

from crossfuse.fusion.base import Fusion, create_fusion, fusion_names, register_fusion

__all__ = ["Fusion", "create_fusion", "fusion_names", "register_fusion"]
