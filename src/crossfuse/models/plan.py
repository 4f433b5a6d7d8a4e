"""Which column processor each input needs, given the encoders the config chooses."""

from __future__ import annotations

from typing import Any

from crossfuse.config import ModelConfig
from crossfuse.data.schema import Modality, Schema
from crossfuse.encoders import DEFAULT_ENCODERS
from crossfuse.encoders.base import encoder_class
from crossfuse.models.fusion_model import encoder_config_for


def processor_plan(schema: Schema, config: ModelConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{column: (processor, overrides)}`` for columns whose encoder needs special input.

    A pretrained image encoder asks for its resolution and normalisation, a Hugging
    Face text encoder for its own tokenizer, and so on.
    """
    plan = {}
    for col in schema.inputs(Modality.TEXT, Modality.IMAGE, Modality.AUDIO):
        modality = str(schema.columns[col])
        enc_cfg = encoder_config_for(config, col, modality)
        cls = encoder_class(enc_cfg.name or DEFAULT_ENCODERS[modality], modality)
        choice = cls.processor_choice(dict(enc_cfg.options))
        if choice is not None:
            plan[col] = choice
    return plan
