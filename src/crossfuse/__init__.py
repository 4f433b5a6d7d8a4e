"""crossfuse: cross-modal knowledge fusion over text, images, audio and tables."""

__version__ = "0.1.0"

from crossfuse.api import FusionPredictor  # noqa: E402
from crossfuse.config import (  # noqa: E402
    CrossfuseConfig,
    DataConfig,
    EncoderConfig,
    ModelConfig,
    TrainConfig,
)
from crossfuse.data.inspect import inspect_table  # noqa: E402
from crossfuse.data.schema import Modality, Schema, infer_schema  # noqa: E402
from crossfuse.data.table import read_table  # noqa: E402
from crossfuse.errors import CrossfuseError  # noqa: E402

__all__ = [
    "CrossfuseConfig",
    "CrossfuseError",
    "DataConfig",
    "EncoderConfig",
    "FusionPredictor",
    "Modality",
    "ModelConfig",
    "Schema",
    "TrainConfig",
    "__version__",
    "infer_schema",
    "inspect_table",
    "read_table",
]
