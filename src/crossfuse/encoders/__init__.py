"""Per-modality encoders, created by name from a registry."""

from crossfuse.encoders.base import (
    Encoder,
    InputSpec,
    ModalityOutput,
    create_encoder,
    encoder_names,
    register_encoder,
)

DEFAULT_ENCODERS = {
    "text": "text-gru",
    "image": "image-cnn",
    "audio": "audio-cnn-gru",
    "tabular": "tabular-mlp",
}

__all__ = [
    "DEFAULT_ENCODERS",
    "Encoder",
    "InputSpec",
    "ModalityOutput",
    "create_encoder",
    "encoder_names",
    "register_encoder",
]
